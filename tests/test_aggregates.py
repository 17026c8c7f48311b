"""Suite aggregates the rliable way: the values are rliable's, the intervals a stratified
bootstrap (runs resampled within each task), reproducible, and direction-aware."""

import numpy as np
import pytest
from rliable import metrics

from peftbench import aggregates
from peftbench.stats import Intervals


def store_of(matrices):
    """Intervals over rows given as (seeds x tasks) score matrices."""
    return Intervals({key: {f"t{j}": {s: (float(m[s, j]), None) for s in range(m.shape[0])} for j in range(m.shape[1])}
                      for key, m in matrices.items()})


def test_the_vectorised_statistics_are_rlibles():
    rng = np.random.default_rng(0)
    x, y = rng.random((3, 5)), rng.random((3, 5))
    columns = [x[:, j] for j in range(5)]
    assert aggregates._mean(*columns) == pytest.approx(metrics.aggregate_mean(x))
    assert aggregates._iqm(*columns) == pytest.approx(metrics.aggregate_iqm(x))
    both = columns + [y[:, j] for j in range(5)]
    assert aggregates._improvement(5)(*both) == pytest.approx(metrics.probability_of_improvement(x, y))
    # vectorised over resamples, as scipy's bootstrap calls them
    batch = [np.stack([c, c[::-1]]) for c in columns]
    assert aggregates._iqm(*batch, axis=-1) == pytest.approx([metrics.aggregate_iqm(x), metrics.aggregate_iqm(x[::-1])])


def test_aggregates_with_intervals_and_the_probability_of_improvement():
    rng = np.random.default_rng(1)
    lora = 0.80 + rng.normal(0, 0.01, (3, 4))
    better = lora + 0.05
    stats = store_of({"lora": lora, "better": better, "part": lora[:, :2]})
    found = aggregates.aggregates(stats, ["lora", "better", "part"], ["t0", "t1", "t2", "t3"], True,
                                  {"better": "lora", "lora": "lora"})
    assert set(found) == {"lora", "better"}  # a row that ran some tasks only has no aggregate
    assert found["better"].mean.estimate == pytest.approx(lora.mean() + 0.05)
    assert found["better"].mean.low < found["better"].mean.estimate < found["better"].mean.high
    assert found["better"].improvement.estimate == 1.0 and found["lora"].improvement is None
    again = aggregates.aggregates(stats, ["lora", "better"], ["t0", "t1", "t2", "t3"], True, {"better": "lora"})
    assert again["better"].iqm == found["better"].iqm  # a seeded generator: the same page every time
    # lower is better (errors): the smaller row improves on the reference
    worse = aggregates.aggregates(stats, ["lora", "better"], ["t0", "t1", "t2", "t3"], False, {"better": "lora"})
    assert worse["better"].improvement.estimate == 0.0


def test_performance_profiles_count_the_runs_above_each_threshold():
    stats = store_of({"a": np.array([[0.2, 0.4], [0.6, 0.8]]), "b": np.array([[0.1, 0.1], [0.1, 0.1]])})
    taus, shares = aggregates.profile(stats, ["a", "b"], ["t0", "t1"], True, points=5)
    assert taus[0] < 0.1 and taus[-1] > 0.8
    assert list(shares["a"]) == [np.mean(np.array([0.2, 0.4, 0.6, 0.8]) > t) for t in taus]
    assert shares["b"][0] == 1.0 and shares["b"][-1] == 0.0
