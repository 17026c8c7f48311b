"""The leaderboard's intervals are calibrated: runs simulated with a known truth, then the share of
nominal 95% intervals that cover it, at 3 and at 5 seeds.

The simulation follows how the runs arise: one fixed test split (examples of varied difficulty,
shared by every seed and method, as a benchmark's test split is), and per method and seed a
trained model whose skill varies with the seed; each example is right with the probability the
model and the example's difficulty give. The truth is the expected accuracy (or difference of
accuracies) over training seeds on that test split, the estimand the leaderboard reports."""

import math

import numpy as np
import pytest
from scipy.special import expit

from peftbench.stats import ALPHA, Intervals, detectable

EXAMPLES = 400
SEED_SD = 0.25  # the seed's effect on a model's logit: a few points of accuracy between seeds
SKILL = {"lora": 1.2, "hora": 1.4}
REPLICATIONS = 2000


def truth(rng: np.random.Generator, difficulty: np.ndarray) -> dict[str, float]:
    """Expected accuracy over seeds on the fixed split, by Gauss-Hermite quadrature over the seed's effect."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()
    return {m: float(np.sum(weights * expit(skill + difficulty[:, None] + SEED_SD * nodes).mean(axis=0)))
            for m, skill in SKILL.items()}


def simulate(rng: np.random.Generator, difficulty: np.ndarray, seeds: int) -> dict:
    """One sweep: each method's runs, task -> seed -> (accuracy, outcomes)."""
    runs = {}
    for method, skill in SKILL.items():
        shift = rng.normal(0, SEED_SD, size=(seeds, 1))
        right = rng.random((seeds, EXAMPLES)) < expit(skill + difficulty + shift)
        runs[method] = {"task": {s: (float(right[s].mean()), right[s]) for s in range(seeds)}}
    return runs


@pytest.mark.parametrize("seeds", [3, 5])
def test_nominal_95_percent_intervals_cover_93_to_97_percent(seeds):
    rng = np.random.default_rng(seeds)
    difficulty = rng.normal(0, 1.5, size=EXAMPLES)
    expected = truth(rng, difficulty)
    gap = expected["hora"] - expected["lora"]
    covered = {"hora": 0, "paired": 0}
    normal_covered = 0  # the same intervals with the normal quantile in place of Student's t
    for _ in range(REPLICATIONS):
        stats = Intervals(simulate(rng, difficulty, seeds))
        row = stats.interval("hora", {"task": 1.0})
        diff = stats.paired("hora", "lora", {"task": 1.0})
        covered["hora"] += row.low <= expected["hora"] <= row.high
        covered["paired"] += diff.low <= gap <= diff.high
        half = 1.96 * diff.sd / math.sqrt(seeds)
        normal_covered += diff.estimate - half <= gap <= diff.estimate + half
    for what, count in covered.items():
        assert 0.93 <= count / REPLICATIONS <= 0.97, (what, count / REPLICATIONS)
    if seeds == 3:  # the check can fail: too few degrees of freedom for the normal quantile
        assert normal_covered / REPLICATIONS < 0.88


def test_a_true_difference_is_found_as_often_as_the_stated_power_says():
    """At the minimum detectable effect the test rejects about 80% of the time, as stated."""
    rng = np.random.default_rng(7)
    seeds, family, sd = 5, 6, 0.01
    effect = detectable(sd, seeds, family)
    found = 0
    for _ in range(REPLICATIONS):
        diffs = rng.normal(effect, sd, size=seeds)
        runs = {"a": {"t": {s: (d, None) for s, d in enumerate(diffs)}},
                "b": {"t": {s: (0.0, None) for s in range(seeds)}}}
        # Holm's first step, where the other tests of the family are true nulls
        found += Intervals(runs).paired("a", "b", {"t": 1.0}).p < ALPHA / family
    assert 0.77 <= found / REPLICATIONS <= 0.83
