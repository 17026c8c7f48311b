"""Suite aggregates as the field reports them (Agarwal et al. 2021, "Deep RL at the edge of the
statistical precipice", and their ``rliable`` library): the mean and the interquartile mean (IQM)
over every run of every task, the probability of improvement P(X > reference), each with a 95%
stratified-bootstrap interval, and performance profiles.

The statistics are rliable's own (``rliable.metrics``). Its bootstrap (``rliable.library``) needs
``arch``, which fails to import under pandas 3 (arch 7) or rejects rliable's arguments (arch 8),
so the stratified bootstrap is scipy's: ``scipy.stats.bootstrap`` resamples each of several
samples independently, and with one sample per task (its seeds' scores) that is rliable's
stratified bootstrap (runs resampled within each task, tasks kept). The performance profile (the
share of runs scoring above each threshold) is rliable's ``create_performance_profile`` without
its bootstrap bands.

Scores are the tasks' own metrics (accuracy, or MSE where lower is better); where lower is
better, the IQM keeps the scale and P(X > reference) counts a lower score as the improvement.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np
from rliable import metrics

from .stats import LEVEL, Interval, Intervals

RESAMPLES = 2000
SEED = 0


@dataclass(frozen=True)
class Aggregate:
    """One row's aggregates over a suite's tasks; ``improvement`` is None for the reference."""

    runs: int
    mean: Interval
    iqm: Interval
    improvement: Interval | None


def scores(stats: Intervals, key: Hashable, tasks: list[str]) -> np.ndarray | None:
    """The (seeds x tasks) score matrix of ``key`` over the seeds it ran on every task."""
    seeds = stats.seeds(key, {t: 1.0 for t in tasks})
    if not seeds:
        return None
    runs = stats.rows[key]
    return np.array([[runs[t][s][0] for t in tasks] for s in seeds])


def _bootstrap(estimate: float, statistic, samples: list[np.ndarray], seed: int) -> Interval:
    """``estimate`` (rliable's value) with the 95% percentile interval of ``statistic`` (the same
    value, vectorised over resamples) from a stratified bootstrap: every sample (one task's runs
    of one row) resampled on its own."""
    from scipy import stats

    if any(len(s) < 2 for s in samples):
        return Interval(estimate)
    found = stats.bootstrap(samples, statistic, n_resamples=RESAMPLES, confidence_level=LEVEL,
                            method="percentile", paired=False, vectorized=True, rng=np.random.default_rng(seed))
    low, high = found.confidence_interval
    return Interval(estimate, float(low), float(high))


def _runs(columns, axis: int) -> np.ndarray:
    """Every run of every task, flattened on the last axis: resamples x (runs * tasks)."""
    stacked = np.stack([np.moveaxis(c, axis, -1) for c in columns], axis=-1)
    return stacked.reshape(*stacked.shape[:-2], -1)


def _mean(*columns, axis=-1):
    return _runs(columns, axis).mean(axis=-1)


def _iqm(*columns, axis=-1):
    from scipy import stats

    return stats.trim_mean(_runs(columns, axis), 0.25, axis=-1)


def _improvement(n: int):
    """P(X > Y) per task as Mann-Whitney's U over every pair of runs (ties count half), averaged
    over the ``n`` tasks; the first ``n`` columns are X's, the others Y's."""
    def statistic(*columns, axis=-1):
        per_task = []
        for x, y in zip(columns[:n], columns[n:]):
            x, y = np.moveaxis(x, axis, -1)[..., :, None], np.moveaxis(y, axis, -1)[..., None, :]
            per_task.append(((x > y) + 0.5 * (x == y)).mean(axis=(-2, -1)))
        return np.mean(per_task, axis=0)
    return statistic


def _columns(matrix: np.ndarray) -> list[np.ndarray]:
    return [matrix[:, i] for i in range(matrix.shape[1])]


def aggregates(stats: Intervals, keys: list[Hashable], tasks: list[str], higher: bool,
               against: Mapping[Hashable, Hashable]) -> dict[Hashable, Aggregate]:
    """Per row that ran every task: its mean and IQM over runs and tasks and, against its reference
    row (``against[key]``, where it has one), P(X > reference) averaged over tasks, each with its
    stratified-bootstrap interval."""
    found = {}
    sign = 1 if higher else -1
    for index, key in enumerate(keys):
        x = scores(stats, key, tasks)
        if x is None:
            continue
        reference = scores(stats, against[key], tasks) if key in against else None
        mean = _bootstrap(float(metrics.aggregate_mean(x)), _mean, _columns(x), index)
        iqm = _bootstrap(float(metrics.aggregate_iqm(x)), _iqm, _columns(x), index)
        improvement = None
        if reference is not None and key != against[key]:
            improvement = _bootstrap(float(metrics.probability_of_improvement(sign * x, sign * reference)),
                                     _improvement(len(tasks)), _columns(sign * x) + _columns(sign * reference),
                                     index)
        found[key] = Aggregate(x.shape[0], mean, iqm, improvement)
    return found


def profile(stats: Intervals, keys: list[Hashable], tasks: list[str], higher: bool,
            points: int = 101) -> tuple[np.ndarray, dict[Hashable, np.ndarray]]:
    """Performance profiles: thresholds spanning every row's scores (log-spaced where lower is
    better and every score positive, as errors are) and, per row, the share of its runs (seeds
    and tasks) scoring better than each."""
    matrices = {key: m for key in keys if (m := scores(stats, key, tasks)) is not None}
    every = np.concatenate([m.ravel() for m in matrices.values()]) if matrices else np.array([0.0, 1.0])
    low, high = float(every.min()), float(every.max())
    if not higher and low > 0:
        taus = np.geomspace(low / 1.5, high * 1.5, points)
    else:
        pad = (high - low) * 0.05 or 0.01
        taus = np.linspace(low - pad, high + pad, points)
    shares = {}
    for key, m in matrices.items():
        runs = m.ravel()
        shares[key] = np.array([np.mean(runs > t) if higher else np.mean(runs < t) for t in taus])
    return taus, shares


def fmt_share(interval: Interval) -> str:
    """A probability and its interval: ``0.83 [0.67, 1.00]``."""
    if not interval.known or math.isnan(interval.low):
        return f"{interval.estimate:.2f}"
    return f"{interval.estimate:.2f} [{interval.low:.2f}, {interval.high:.2f}]"
