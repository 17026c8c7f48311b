"""The statistics behind every verdict: seed-level t intervals and tests, Holm's correction, the
rows no other row beats, and the minimum detectable effect."""

import math

import numpy as np
import pytest
from scipy.stats import ttest_rel
from statsmodels.stats.power import TTestPower

from peftbench.stats import Intervals, detectable, detectable_effect, holm, t_interval, unbeaten


def runs(values):
    """One task's runs from per-seed scores."""
    return {"t": {seed: (v, None) for seed, v in enumerate(values)}}


def test_a_paired_difference_is_a_t_interval_and_test_over_the_seeds():
    stats = Intervals({"a": runs([0.80, 0.82, 0.84]), "b": runs([0.78, 0.79, 0.80])})
    diff = stats.paired("a", "b", {"t": 1.0})
    d = np.array([0.02, 0.03, 0.04])
    half = 4.302653 * d.std(ddof=1) / math.sqrt(3)
    assert diff.estimate == pytest.approx(0.03) and diff.half_width == pytest.approx(half, rel=1e-5)
    assert diff.p == pytest.approx(ttest_rel([0.80, 0.82, 0.84], [0.78, 0.79, 0.80]).pvalue)
    assert diff.n == 3 and diff.sd == pytest.approx(0.01)
    assert stats.paired("b", "a", {"t": 1.0}).estimate == pytest.approx(-0.03)
    # one seed: an estimate, no interval, no test
    one = Intervals({"a": runs([0.8]), "b": runs([0.7])}).paired("a", "b", {"t": 1.0})
    assert one.estimate == pytest.approx(0.1) and not one.known and math.isnan(one.p)
    # seeds that agree exactly: a degenerate interval, and a difference that is not 0 is certain
    assert t_interval([0.1, 0.1]).p == 0.0 and t_interval([0.0, 0.0]).p == 1.0


def test_holm_rejects_step_down_and_never_without_a_p_value():
    found = holm({"a": 0.01, "b": 0.015, "c": 0.04, "d": math.nan})
    # 4 tests: 0.01 < 0.05/4, 0.015 < 0.05/3, 0.04 > 0.05/2: stop
    assert found == {"a": True, "b": True, "c": False, "d": False}
    assert holm({}) == {}


def test_unbeaten_rows_are_those_no_other_row_beats_after_correction():
    stats = Intervals({"best": runs([0.90, 0.91, 0.92, 0.90, 0.91]), "close": runs([0.89, 0.915, 0.91, 0.905, 0.90]),
                       "worst": runs([0.50, 0.52, 0.51, 0.50, 0.53])})

    def paired(a, b):
        return stats.paired(a, b, {"t": 1.0})

    assert unbeaten(["best", "close", "worst"], True, paired) == {"best", "close"}
    assert unbeaten(["best", "close", "worst"], False, paired) == {"worst"}  # lower is better
    assert unbeaten(["best"], True, paired) == set()  # a lone row is no contest


def test_the_minimum_detectable_effect_agrees_with_statsmodels_and_grows_with_the_family():
    for seeds in (3, 5, 10):
        assert detectable_effect(seeds, 1) == pytest.approx(
            TTestPower().solve_power(nobs=seeds, alpha=0.05, power=0.8), rel=1e-4)
    effects = [detectable_effect(3, family) for family in (1, 6, 36)]
    assert effects == sorted(effects) and effects[-1] > 15  # 3 seeds cannot carry 36 tests
    assert detectable(0.01, 3, 1) == pytest.approx(0.01 * effects[0])
    assert detectable(0.0, 3, 1, floor=0.0025) == 0.0025 and math.isnan(detectable(0.01, 1, 1))
