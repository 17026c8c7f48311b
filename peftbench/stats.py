"""The leaderboard's statistics: 95% confidence intervals of a row's score, paired differences
between two rows, and which row (if any) is significantly the best.

A *score* is a weighted mean over tasks (one task with weight 1; the mean of a suite's tasks;
VTAB's mean of group means) of each final run's test metric, averaged over seeds.

**With per-example outcomes** (every final run since store schema 4 keeps them,
``peftbench.outcomes``) the interval is a two-level percentile bootstrap: each of ``RESAMPLES``
resamples draws, per task, the test examples with replacement (one draw shared by every seed and
every row, since they all scored the same test examples), and draws the seeds with replacement
(one draw shared by every row with the same seeds). Sharing the draws makes every difference
between two rows *paired*, by test example and by seed. The random generator is seeded from
``SEED`` and the task's name (never Python's salted ``hash``), so the same store always gives the
same page.

**Without outcomes** (records from before schema 4, or outcomes of unequal length) only the seeds
are left: a Student-t interval over the seeds' scores, and for a difference a paired t interval
over the seeds both rows ran. One seed gives no interval at all.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
#: resampled example counts held in memory at once (test sets of 100k examples stay small)
CHUNK = 2_000_000

#: a row's runs: task -> seed -> (test metric, per-example outcomes or None)
Runs = Mapping[str, Mapping[int, tuple[float, "np.ndarray | None"]]]


@dataclass(frozen=True)
class Interval:
    """A point estimate and its 95% interval; ``low``/``high`` are nan where there is none."""

    estimate: float
    low: float = math.nan
    high: float = math.nan

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


def _t_quantile(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + LEVEL / 2, df))


def t_interval(values: list[float]) -> Interval:
    """Mean and Student-t interval of a few values (seeds); no interval from one value."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return Interval(mean)
    half = _t_quantile(len(values) - 1) * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half)


class Intervals:
    """Intervals and paired differences of weighted means over tasks, for the rows of one table.

    ``rows`` maps a row key (e.g. (method, budget)) to its runs; ``by_examples`` chooses the
    bootstrap over seeds and test examples (every run must then carry outcomes, of one length per
    task) or, when False, t intervals over seeds only. ``weights`` maps task -> weight."""

    def __init__(self, rows: Mapping[Hashable, Runs], by_examples: bool, resamples: int = RESAMPLES,
                 seed: int = SEED):
        self.rows, self.by_examples, self.resamples, self.seed = rows, by_examples, resamples, seed
        self._means: dict[str, tuple[dict[tuple, int], np.ndarray]] = {}

    @staticmethod
    def usable(rows: Mapping[Hashable, Runs]) -> bool:
        """Whether every run carries outcomes, of the same length for a task's every run."""
        lengths: dict[str, set[int]] = {}
        for runs in rows.values():
            for task, seeds in runs.items():
                for _, outcomes in seeds.values():
                    if outcomes is None:
                        return False
                    lengths.setdefault(task, set()).add(len(outcomes))
        return all(len(n) == 1 and n != {0} for n in lengths.values())

    # --- the scores ---------------------------------------------------------------------------

    def seeds(self, key: Hashable, weights: Mapping[str, float]) -> list[int]:
        """The seeds at which ``key`` ran every weighted task."""
        runs = self.rows.get(key, {})
        if not weights or any(task not in runs for task in weights):
            return []
        return sorted(set.intersection(*(set(runs[task]) for task in weights)))

    def scores(self, key: Hashable, weights: Mapping[str, float], seeds: list[int]) -> np.ndarray:
        runs = self.rows[key]
        return np.array([sum(w * runs[task][s][0] for task, w in weights.items()) for s in seeds])

    # --- the bootstrap --------------------------------------------------------------------------

    def _example_means(self, task: str) -> tuple[dict[tuple, int], np.ndarray]:
        """Per resample, the mean outcome of every (row, seed) of ``task`` over one draw of its
        test examples with replacement (the same draw for all): (column of (row, seed), B x C)."""
        if task not in self._means:
            columns, data = {}, []
            for key, runs in self.rows.items():
                for s, (_, outcomes) in sorted(runs.get(task, {}).items()):
                    columns[(key, s)] = len(data)
                    data.append(np.asarray(outcomes, dtype=np.float64))
            x = np.column_stack(data)
            n = len(x)
            # resampling n examples with replacement = multinomial counts over the distinct rows of
            # outcomes (few, for right/wrong outcomes: exact and fast)
            patterns, counts = np.unique(x, axis=0, return_counts=True)
            rng = np.random.default_rng([self.seed, zlib.crc32(task.encode())])
            chunk = max(1, CHUNK // len(patterns))  # at most CHUNK counts in memory at once
            means = [rng.multinomial(n, counts / n, size=min(chunk, self.resamples - start)) @ patterns / n
                     for start in range(0, self.resamples, chunk)]
            self._means[task] = columns, np.concatenate(means)
        return self._means[task]

    def draws(self, key: Hashable, weights: Mapping[str, float], seeds: list[int]) -> np.ndarray:
        """The ``RESAMPLES`` bootstrap values of ``key``'s score over ``seeds``: seeds drawn with
        replacement (the same draw for every row with these seeds), test examples per task."""
        per_seed = np.zeros((self.resamples, len(seeds)))
        for task, w in weights.items():
            columns, means = self._example_means(task)
            per_seed += w * means[:, [columns[(key, s)] for s in seeds]]
        rng = np.random.default_rng([self.seed, len(seeds), *seeds])
        slots = rng.integers(0, len(seeds), size=(self.resamples, len(seeds)))
        return np.take_along_axis(per_seed, slots, axis=1).mean(axis=1)

    def _percentiles(self, estimate: float, draws: np.ndarray) -> Interval:
        low, high = np.percentile(draws, [50 - LEVEL * 50, 50 + LEVEL * 50])
        return Interval(estimate, float(low), float(high))

    # --- what the leaderboard asks ----------------------------------------------------------------

    def interval(self, key: Hashable, weights: Mapping[str, float]) -> Interval | None:
        """The mean over ``key``'s seeds of its score, and its 95% interval; None where it lacks a task."""
        seeds = self.seeds(key, weights)
        if not seeds:
            return None
        scores = self.scores(key, weights, seeds)
        if not self.by_examples:
            return t_interval(list(scores))
        return self._percentiles(float(scores.mean()), self.draws(key, weights, seeds))

    def paired(self, key: Hashable, other: Hashable, weights: Mapping[str, float]) -> Interval | None:
        """``key``'s score minus ``other``'s over the seeds both ran, paired by seed and (with
        outcomes) test example, and its 95% interval; None where they share no seed."""
        seeds = sorted(set(self.seeds(key, weights)) & set(self.seeds(other, weights)))
        if not seeds:
            return None
        diff = self.scores(key, weights, seeds) - self.scores(other, weights, seeds)
        if not self.by_examples:
            return t_interval(list(diff))
        return self._percentiles(float(diff.mean()),
                                 self.draws(key, weights, seeds) - self.draws(other, weights, seeds))


def verdicts(estimates: Mapping[Hashable, float], higher: bool, paired: Callable[[Hashable, Hashable], Interval | None],
             at_chance: Callable[[Hashable], bool] = lambda key: False) -> dict[Hashable, str]:
    """Per row, ``"best"`` for the top row when its paired interval against the runner-up lies
    wholly on the better side of 0; otherwise ``"tied"`` for the top row and every row whose paired
    interval against it includes 0 (no interval counts as including it). A top row at chance gets
    neither, nor does a table of one row."""
    ranked = sorted(estimates, key=lambda k: -estimates[k] if higher else estimates[k])
    if len(ranked) < 2 or at_chance(ranked[0]):
        return {}
    best, runner_up = ranked[0], ranked[1]
    diff = paired(best, runner_up)
    if diff is not None and (diff.above(0) if higher else diff.below(0)):
        return {best: "best"}
    tied = {best: "tied"}
    for key in ranked[1:]:
        diff = paired(best, key)
        if not at_chance(key) and (diff is None or not diff.excludes(0)):
            tied[key] = "tied"
    return tied if len(tied) > 1 else {}  # not clear of a runner-up at chance: no verdict either way
