"""The leaderboard's statistics, with the training seed as the unit of replication.

A *score* is a weighted mean over tasks (one task with weight 1; the mean of a suite's tasks;
VTAB's mean of group means) of a final run's test metric; a row has one score per seed.

- **Intervals** are Student-t intervals over a row's seed scores, and a **paired difference** is
  the t interval (and two-sided t test) of the seed-by-seed differences of two rows over the
  seeds both ran: the same seeds, the same test examples. The estimand is the expected score over
  training randomness on the benchmark's fixed test split; the test examples are shared by every
  seed, so resampling them as if each seed drew its own (the earlier percentile bootstrap over
  seeds and examples) counted the same information several times and covered about 75% at a
  nominal 95% with 3 seeds. ``tests/test_calibration.py`` simulates runs with known truth and
  checks these intervals cover 93-97% at 3 and 5 seeds.
- **Families** of tests are corrected with Holm's step-down procedure (statsmodels), which
  controls the family-wise error rate at ``ALPHA``.
- **Power**: the minimum detectable effect of a paired t test at the family's strictest level
  (Bonferroni's, Holm's first step) with 80% power, from the seeds and the seed-level standard
  deviation of the differences.

One seed gives no interval and no test.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
ALPHA = 1 - LEVEL
POWER = 0.8

#: a row's runs: task -> seed -> (test metric, per-example outcomes or None)
Runs = Mapping[str, Mapping[int, tuple[float, "np.ndarray | None"]]]


@dataclass(frozen=True)
class Interval:
    """A point estimate and its 95% interval; for a paired difference also the two-sided p value
    of "no difference" and the seeds' standard deviation. nan where there is none (one seed)."""

    estimate: float
    low: float = math.nan
    high: float = math.nan
    p: float = math.nan
    sd: float = math.nan
    n: int = 1

    @property
    def known(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def excludes(self, value: float = 0.0) -> bool:
        return self.known and (self.low > value or self.high < value)

    def above(self, value: float) -> bool:
        """Significantly above ``value``: the whole interval lies above it."""
        return self.known and self.low > value

    def below(self, value: float) -> bool:
        return self.known and self.high < value


def t_interval(values, floor: float = 0.0) -> Interval:
    """Mean, Student-t interval and one-sample t test against 0 of a few values (seeds). ``floor``
    bounds the standard deviation from below: differences counted in whole test examples can agree
    at every seed by chance (one example more at each of 3 seeds), which is no certainty."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean)
    sd = max(float(x.std(ddof=1)), floor)
    if sd == 0:  # every seed agrees: a degenerate interval, and a test only where the mean is not 0
        return Interval(mean, mean, mean, 1.0 if mean == 0 else 0.0, 0.0, len(x))
    se, df = sd / math.sqrt(len(x)), len(x) - 1
    half = float(stats.t.ppf(0.5 + LEVEL / 2, df)) * se
    p = float(2 * stats.t.sf(abs(mean) / se, df))  # the one-sample t test of "the mean is 0"
    return Interval(mean, mean - half, mean + half, p, sd, len(x))


class Intervals:
    """Intervals and paired differences of weighted means over tasks, for the rows of one table.

    ``rows`` maps a row key (e.g. (method, budget)) to its runs; ``weights`` maps task -> weight."""

    def __init__(self, rows: Mapping[Hashable, Runs]):
        self.rows = rows

    def seeds(self, key: Hashable, weights: Mapping[str, float]) -> list[int]:
        """The seeds at which ``key`` ran every weighted task."""
        runs = self.rows.get(key, {})
        if not weights or any(task not in runs for task in weights):
            return []
        return sorted(set.intersection(*(set(runs[task]) for task in weights)))

    def scores(self, key: Hashable, weights: Mapping[str, float], seeds: list[int]) -> np.ndarray:
        runs = self.rows[key]
        return np.array([sum(w * runs[task][s][0] for task, w in weights.items()) for s in seeds])

    def test_examples(self, task: str) -> int | None:
        """How many test examples the task's runs scored (from their outcomes), None if unknown."""
        for runs in self.rows.values():
            for _, outcomes in runs.get(task, {}).values():
                if outcomes is not None:
                    return len(outcomes)
        return None

    def interval(self, key: Hashable, weights: Mapping[str, float]) -> Interval | None:
        """The mean over ``key``'s seeds of its score, and its 95% interval; None where it lacks a task."""
        seeds = self.seeds(key, weights)
        return t_interval(self.scores(key, weights, seeds)) if seeds else None

    def paired(self, key: Hashable, other: Hashable, weights: Mapping[str, float],
               floor: float = 0.0) -> Interval | None:
        """``key``'s score minus ``other``'s over the seeds both ran, its 95% interval and p value
        (the seeds' spread taken as at least ``floor``); None where they share no seed."""
        seeds = sorted(set(self.seeds(key, weights)) & set(self.seeds(other, weights)))
        if not seeds:
            return None
        return t_interval(self.scores(key, weights, seeds) - self.scores(other, weights, seeds), floor)


def holm(pvalues: Mapping[Hashable, float], alpha: float = ALPHA) -> dict[Hashable, bool]:
    """Which hypotheses of one family Holm's procedure rejects at family-wise error ``alpha``
    (tests without a p value take part in the family size and are never rejected)."""
    from statsmodels.stats.multitest import multipletests

    keys = list(pvalues)
    if not keys:
        return {}
    p = np.array([1.0 if math.isnan(pvalues[k]) else pvalues[k] for k in keys])
    rejected = multipletests(p, alpha=alpha, method="holm")[0]
    return {k: bool(r) and not math.isnan(pvalues[k]) for k, r in zip(keys, rejected)}


def detectable(sd: float, seeds: int, family: int, floor: float = 0.0) -> float:
    """The smallest true difference a two-sided paired t test over ``seeds`` seeds detects with
    ``POWER`` at Holm's strictest level in a family of ``family`` tests, where the seed-level
    differences have standard deviation ``sd``; never below ``floor`` (one test example's worth).
    nan with fewer than 2 seeds."""
    if seeds < 2 or math.isnan(sd):
        return math.nan
    return max(detectable_effect(seeds, max(family, 1)) * sd, floor)


@functools.cache
def detectable_effect(seeds: int, family: int) -> float:
    """``detectable`` in standard deviations of the differences. statsmodels' ``TTestPower`` fails
    to converge at the small levels of large families and scipy's noncentral t loses its digits
    there, so the power is integrated directly: T = (Z + nc) / sqrt(V / df) with V ~ chi2(df)."""
    from scipy import integrate, optimize, stats

    df = seeds - 1
    critical = stats.t.isf(ALPHA / family / 2, df)

    def power(effect: float) -> float:
        nc = effect * math.sqrt(seeds)

        def given(v: float) -> float:
            bound = critical * math.sqrt(v / df)
            return (stats.norm.sf(bound - nc) + stats.norm.cdf(-bound - nc)) * stats.chi2.pdf(v, df)

        return integrate.quad(given, 0, math.inf, limit=200)[0]

    high = 1.0
    while power(high) < POWER:
        high *= 2
    return float(optimize.brentq(lambda e: power(e) - POWER, 0.0, high, xtol=1e-6))


def unbeaten(keys: list[Hashable], higher: bool, paired: Callable[[Hashable, Hashable], Interval | None],
             eligible: Callable[[Hashable], bool] = lambda key: True) -> set[Hashable]:
    """The rows no other row beats: every pair of eligible rows is tested (paired t over seeds),
    the family of those tests corrected by Holm; a row is beaten where another row is better with
    the test rejected. Empty where nothing could be tested (one seed) or there is one row."""
    rows = [k for k in keys if eligible(k)]
    tests = {}
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            diff = paired(a, b)
            if diff is not None and not math.isnan(diff.p):
                tests[(a, b)] = diff
    if len(rows) < 2 or not tests:
        return set()
    rejected = holm({pair: diff.p for pair, diff in tests.items()})
    beaten = set()
    for (a, b), diff in tests.items():
        if rejected[(a, b)]:
            a_better = (diff.estimate > 0) == higher
            beaten.add(b if a_better else a)
    return set(rows) - beaten
