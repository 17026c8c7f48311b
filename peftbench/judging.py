"""The leaderboard's judgements, as data: which final runs count, the columns of a suite's table
(tasks, group means, means), each row's interval per column, which rows no other row beats, which
are at chance, and each row's paired difference from a reference with its corrected verdict and
the effect the test could have detected. ``peftbench.stats`` does the statistics."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Hashable

import pandas as pd

from .board.model import Cell
from .formats import PERCENT, fmt_delta, fmt_interval
from .outcomes import decode
from .stats import Interval, Intervals, detectable, holm, unbeaten

#: metrics where a smaller value is better, for suites the registry does not know
LOWER_IS_BETTER = {"mse", "rmse", "mae", "loss", "error", "perplexity"}
CHANCE = "(chance)"

Key = tuple[str, str]  # (method, budget): one row of a table


def fraction_of(r: dict) -> float:
    return 1.0 if r["data_fraction"] is None else r["data_fraction"]


def protocol_of(r: dict) -> int:
    """The tuning protocol a run followed (``peftbench.tuning.PROTOCOL``; 1 before it was recorded)."""
    return (r["settings"] or {}).get("protocol", 1)


def most_tuned(records: list[dict]) -> list[dict]:
    """Per cell, the final runs of the newest tuning protocol and, within it, of the most trials: a
    study retuned under a later protocol, or continued with a larger --trials, supersedes its
    earlier final runs, which stay in the store."""
    def cell(r):
        return r["suite"], r["task"], r["method"], r["budget"], r["backbone"], r["data_fraction"]

    def rank(r):
        return protocol_of(r), r["settings"].get("trials", 0)

    most: dict[tuple, tuple] = {}
    for r in records:
        most[cell(r)] = max(most.get(cell(r), (0, 0)), rank(r))
    return [r for r in records if rank(r) == most[cell(r)]]


def _task_plugin(suite: str, task: str):
    from . import registry

    found = registry.tasks().loaded.get(suite)
    return next((t for t in getattr(found, "tasks", ()) if t.name == task), None)


def higher_is_better(suite: str, task: str, metric: str) -> bool:
    """The task plugin says; a suite no installed plugin provides is judged by its metric's name."""
    found = _task_plugin(suite, task)
    return found.higher_is_better if found is not None else metric not in LOWER_IS_BETTER


def chance_level(suite: str, task: str) -> float | None:
    """A classification task's chance accuracy, 1 / number of classes (its plugin says how many);
    None for regression and for tasks no installed plugin provides."""
    from .records import Kind

    found = _task_plugin(suite, task)
    if found is None or found.kind is Kind.REGRESS or not found.higher_is_better or found.num_classes < 2:
        return None
    return 1 / found.num_classes


def frame(records: list[dict]) -> pd.DataFrame:
    """One row per final run, the columns the tables group and average."""
    return pd.DataFrame.from_records([{
        "method": r["method"], "budget": r["budget"], "task": r["task"], "group": r["group"] or "",
        "seed": r["seed"], "fraction": fraction_of(r), "test_metric": r["test_metric"],
        "fixed": not r["size"], "short": r["budget_reached"] == 0, "trainable": r["trainable_params"],
        "total": r["total_params"], "budget_params": r.get("budget_params"),
        "train_rate": r["train_samples_per_s"] or 0.0, "eval_rate": r["eval_samples_per_s"] or 0.0,
        "peak": r["peak_memory_mb"] or 0.0, "head": r.get("head_params") or 0,
    } for r in records])


def _decoded(r: dict):
    """The run's per-example outcomes (decoded once per record and kept on it), None where it has none."""
    if "_outcomes" not in r:
        r["_outcomes"] = decode(r["outcomes"]) if r.get("outcomes") else None
    return r["_outcomes"]


def intervals(rows: list[dict]) -> Intervals:
    """The statistics of a table's rows: per row key, task -> seed -> (test metric, outcomes)."""
    runs: dict = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        runs[(r["method"], r["budget"])][r["task"]][r["seed"]] = (r["test_metric"], _decoded(r))
    return Intervals({key: dict(tasks) for key, tasks in runs.items()})


def untrained(df: pd.DataFrame) -> list[Key]:
    """Rows that train nothing at all (no backbone parameter, no head): the untrained model."""
    found = df.groupby(["method", "budget"])[["trainable", "head"]].max()
    return [key for key, row in found.iterrows() if row["trainable"] == 0 and row["head"] == 0]


def complete(rows: list[dict], cols: Columns) -> list[Key]:
    """The rows that ran every task of the table (all of them, where none did): the budget curve's
    rows that ran some tasks only are compared in the budgets table instead."""
    keys: list[Key] = sorted({(r["method"], r["budget"]) for r in rows})
    ran = frame(rows).groupby(["method", "budget"])["task"].nunique()
    complete = [key for key in keys if ran[key] == len(cols.tasks)]
    return complete or keys


class Columns:
    """The metric columns of a suite's table: tasks, group means when the tasks span several
    groups (VTAB: natural, specialized, structured), the mean of the tasks and of the groups.
    Each column is a weighted mean over tasks (``weights``)."""

    def __init__(self, rows: list[dict]):
        groups: dict[str, list[str]] = defaultdict(list)
        for r in sorted(rows, key=lambda r: (r["group"] or "", r["task"])):
            if r["task"] not in groups[r["group"] or ""]:
                groups[r["group"] or ""].append(r["task"])
        self.suite = rows[0]["suite"]
        self.groups = dict(groups)
        self.tasks = [t for tasks in self.groups.values() for t in tasks]
        self.metric = {r["task"]: r["metric"] for r in rows}
        metrics = set(self.metric.values())
        self.suite_metric = metrics.pop() if len(metrics) == 1 else None
        self.higher = {t: higher_is_better(self.suite, t, self.metric[t]) for t in self.tasks}
        directions = set(self.higher.values())
        self.suite_higher = directions.pop() if len(directions) == 1 else None

    def names(self) -> list[str]:
        if len(self.groups) > 1:
            return [*self.tasks, *(f"{g} mean" for g in self.groups), f"mean ({len(self.tasks)} tasks)",
                    "mean of groups"]
        return [*self.tasks, "mean"] if len(self.tasks) > 1 else list(self.tasks)

    @property
    def summary(self) -> int:
        """The column of the mean over tasks (the task itself in a one-task table): the one the
        Pareto figure uses."""
        return len(self.tasks) + (len(self.groups) if len(self.groups) > 1 else 0) if len(self.tasks) > 1 else 0

    def weights(self) -> list[dict[str, float] | None]:
        """Per column, task -> weight (None: a mean over tasks of different metrics, not shown)."""
        columns: list[dict[str, float] | None] = [{t: 1.0} for t in self.tasks]
        if len(self.tasks) == 1:
            return columns

        def mean_of(tasks: list[str]) -> dict[str, float] | None:
            return {t: 1 / len(tasks) for t in tasks} if self.suite_metric is not None else None

        if len(self.groups) > 1:
            of_groups = {t: 1 / (len(self.groups) * len(tasks)) for tasks in self.groups.values() for t in tasks}
            return columns + [mean_of(ts) for ts in self.groups.values()] + [
                mean_of(self.tasks), of_groups if self.suite_metric is not None else None]
        return columns + [mean_of(self.tasks)]

    def point(self, values: dict[str, float]) -> list[float | None]:
        """Per column, the weighted mean of single values per task (reported numbers)."""
        return [sum(w * values[t] for t, w in weights.items()) if weights and all(t in values for t in weights)
                else None for weights in self.weights()]

    def direction(self, index: int) -> bool | None:
        return self.higher[self.tasks[index]] if index < len(self.tasks) else self.suite_higher

    def metric_of(self, index: int) -> str | None:
        return self.metric[self.tasks[index]] if index < len(self.tasks) else self.suite_metric

    def chance(self, index: int) -> float | None:
        """Chance accuracy of a column: its tasks' chance levels, weighted alike."""
        weights = self.weights()[index]
        levels = {t: chance_level(self.suite, t) for t in weights or {}}
        if not weights or any(level is None for level in levels.values()):
            return None
        return sum(w * levels[t] for t, w in weights.items())

    def resolution(self, index: int, stats: Intervals) -> float:
        """The smallest change of a column's accuracy: one test example of its finest task (0 for
        metrics that are not accuracies, or where the test size is not recorded). Paired tests take
        it as the least spread of seed-level differences, and power as the least detectable step."""
        weights = self.weights()[index] or {}
        sizes = {t: stats.test_examples(t) for t in weights}
        if self.metric_of(index) not in PERCENT or not weights or None in sizes.values():
            return 0.0
        return min(w / sizes[t] for t, w in weights.items())


class Judged:
    """One column of one table, judged: each row's interval, whether it is at chance, and the rows
    no other row beats (``best``: every pair tested, Holm-corrected over the column's pairs).
    Classification: chance is 1/classes; regression: the untrained model, the rows that train
    nothing (hmoe's ``linear``), compared paired."""

    def __init__(self, stats: Intervals, keys: list[Key], weights: dict[str, float] | None, higher: bool | None,
                 chance: float | None, untrained: list[Key], resolution: float = 0.0):
        """``resolution``: the column's smallest step (one test example's worth of accuracy), the
        least seed-level spread a paired test assumes."""
        self.intervals: dict[Key, Interval] = {}
        self.at_chance: dict[Key, bool] = {}
        self.best: set[Hashable] = set()
        self.pairs = 0
        if weights is None:
            return
        for key in keys:
            found = stats.interval(key, weights)
            if found is not None:
                self.intervals[key] = found

        def at_chance(key: Key) -> bool:
            iv = self.intervals[key]
            if chance is not None and higher:
                return not (iv.above(chance) if iv.known else iv.estimate > chance)
            if higher is False:
                for base in untrained:
                    diff = stats.paired(key, base, weights)
                    if diff is not None:
                        return not (diff.below(0) if diff.known else diff.estimate < 0)
            return False

        self.at_chance = {key: at_chance(key) for key in self.intervals}
        if higher is not None:
            eligible = [k for k in self.intervals if not self.at_chance[k]]
            self.pairs = len(eligible) * (len(eligible) - 1) // 2
            self.best = unbeaten(eligible, higher, lambda a, b: stats.paired(a, b, weights, resolution))
            if len(eligible) == 1 and len(self.intervals) > 1:  # the one row above chance leads the rest
                self.best = set(eligible)

    def cell(self, key: Key, metric: str | None) -> Cell:
        if key not in self.intervals:
            return Cell("-")
        text = fmt_interval(self.intervals[key], metric)
        text = f"**{text}**" if key in self.best else text
        verdict = "chance" if self.at_chance[key] else "best" if key in self.best else None
        return Cell.of(self.intervals[key], text + (f" {CHANCE}" if self.at_chance[key] else ""), verdict)


class Deltas:
    """Each row's paired difference from the reference row of its budget (``against``), in each of
    several columns; all of them one family of tests, Holm-corrected. The minimum detectable effect
    at the family's strictest level: per cell from its own seed-level spread, per column from the
    median spread of its cells (rows can differ by orders of magnitude, as errors do)."""

    def __init__(self, stats: Intervals, keys: list[Key], against: str,
                 columns: list[tuple[dict[str, float] | None, bool | None, float]]):
        """``columns``: per column its task weights, whether higher is better, and its resolution."""
        self.against, self.higher = against, [higher for _, higher, _ in columns]
        self.diffs: dict[tuple[Key, int], Interval] = {}
        for key in keys:
            if key[0] == against:
                continue
            for i, (weights, _, _) in enumerate(columns):
                diff = stats.paired(key, (against, key[1]), weights, columns[i][2]) if weights else None
                if diff is not None:
                    self.diffs[(key, i)] = diff
        tested = {k: d.p for k, d in self.diffs.items() if not math.isnan(d.p)}
        self.family = len(tested)
        self.rejected = holm(tested)
        self.floors = [floor for _, _, floor in columns]
        self.detectable = []
        for i, floor in enumerate(self.floors):
            in_column = [d for (_, c), d in self.diffs.items() if c == i and d.n > 1]
            spread = statistics.median(d.sd for d in in_column) if in_column else math.nan
            seeds = max((d.n for d in in_column), default=1)
            self.detectable.append(detectable(spread, seeds, self.family, floor))

    def verdict(self, key: Key, column: int) -> str | None:
        """"better" or "worse" where the corrected test rejects "no difference", else None."""
        diff = self.diffs.get((key, column))
        if diff is None or not self.rejected.get((key, column)) or self.higher[column] is None:
            return None
        return "better" if (diff.estimate > 0) == self.higher[column] else "worse"

    def cell(self, key: Key, column: int, metric: str | None) -> Cell:
        if key[0] == self.against:
            return Cell("reference", verdict="reference")
        diff = self.diffs.get((key, column))
        if diff is None:
            return Cell("-")
        verdict = self.verdict(key, column)
        return Cell.of(diff, fmt_delta(diff, metric, verdict,
                                       detectable(diff.sd, diff.n, self.family, self.floors[column])), verdict)
