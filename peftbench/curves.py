"""The leaderboard's curves: metric against trainable parameters (the Pareto figure and, where
budgets ran on some of a suite's tasks, the budgets table) and against the data fraction (the
sample-efficiency figure and table)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

import pandas as pd

from . import figures
from .board.model import Block, Cell, Figure, Heading, Point, Row, Scatter, Table, Text
from .budget import FIXED
from .formats import PERCENT, fmt_count, fmt_fraction, fmt_interval, slug
from .judging import Columns, Deltas, Judged, Key, fraction_of, frame, intervals, untrained
from .stats import Interval, Intervals

#: above this many tasks with curves, the fraction figure shows the suite mean instead of one panel
#: per task (where every task ran every fraction)
MAX_TASK_PANELS = 4


def budgets(rows: list[dict]) -> list[str]:
    """The budgets the sized methods ran at (a fixed-size method's ``fixed`` is none of them)."""
    return sorted({r["budget"] for r in rows if r["budget"] != FIXED}, key=str) or [FIXED]


def label(key: Key, budgets: int, fixed: bool) -> str:
    return key[0] + (f" @ {key[1]}" if budgets > 1 and not fixed else "")


def axis(cols: Columns, what: str) -> figures.Axis:
    lower = cols.suite_higher is False
    metric = cols.suite_metric or "metric"
    unit = " (%)" if metric in PERCENT else ""
    note = " (log scale, lower is better)" if lower else ""
    return figures.Axis(f"{what} test {metric}{unit}{note}", lower, 100 if metric in PERCENT else 1)


def _point(x: float, interval: Interval) -> figures.Point:
    return figures.Point(x, interval.estimate, interval.low, interval.high)


def curve_tasks(rows: list[dict], cols: Columns) -> list[str]:
    """The tasks every sized row ran: all of the suite's, or fewer where some budgets ran only some
    tasks (a budget curve on one task); the Pareto figure and the budget table average these."""
    sized = frame(rows).query("not fixed")
    ran = [set(tasks) for tasks in sized.groupby(["method", "budget"])["task"].unique()]
    common = set.intersection(*ran) if ran else set(cols.tasks)
    return [t for t in cols.tasks if t in common] or cols.tasks


def _curve_weights(rows: list[dict], cols: Columns) -> tuple[dict[str, float] | None, str]:
    """Task weights of the budget comparisons (None: tasks of different metrics) and their label."""
    tasks = curve_tasks(rows, cols)
    if tasks == cols.tasks:
        what = f"mean over {len(tasks)} tasks" if len(tasks) > 1 else tasks[0]
        return cols.weights()[cols.summary], what
    weights = {t: 1 / len(tasks) for t in tasks} if cols.suite_metric is not None else None
    return weights, tasks[0] if len(tasks) == 1 else f"mean over {', '.join(tasks)}"


def budget_deltas(rows: list[dict], cols: Columns, stats: Intervals, against: str) -> tuple[pd.Series, Deltas] | None:
    """The sized rows' trainable counts and their paired differences from ``against`` at the same
    budget over the tasks every budget ran (one family); None where those tasks mix metrics."""
    weights, _ = _curve_weights(rows, cols)
    if weights is None:
        return None
    sized = frame(rows).query("not fixed").groupby(["method", "budget"])["trainable"].mean()
    floor = min(w / (stats.test_examples(t) or float("inf")) for t, w in weights.items()) \
        if cols.suite_metric in PERCENT else 0.0
    return sized, Deltas(stats, sorted(sized.index), against, [(weights, cols.suite_higher, floor)])


def budget_table(rows: list[dict], cols: Columns, stats: Intervals, against: str) -> list[Block]:
    """Every method at every budget over the tasks all budgets ran, with its paired difference from
    ``against`` at the same budget: the main table's mean and Δ need every task of the suite."""
    found = budget_deltas(rows, cols, stats, against)
    if found is None:
        return []
    (sized, deltas), (weights, what) = found, _curve_weights(rows, cols)
    table = []
    for key in sorted(sized.index):
        interval = stats.interval(key, weights)
        score = Cell.of(interval, fmt_interval(interval, cols.suite_metric)) if interval else Cell("-")
        cells = (Cell(key[0]), Cell(key[1]), Cell(fmt_count(sized[key]), sized[key]), score,
                 deltas.cell(key, 0, cols.suite_metric))
        table.append(Row(cells, *key))
    columns = ("method", "budget", "trainable", f"{what}: test {cols.suite_metric}", f"Δ vs {against}")
    return [Text.of(f"Family: the {deltas.family} paired differences of this table, Holm-corrected."),
            Table(columns, tuple(table), "budgets")]


def _points(rows: list[dict], cols: Columns, stats: Intervals
            ) -> tuple[dict[tuple[str, str], tuple[pd.DataFrame, Interval]], str] | None:
    """Per row key, its runs and its score over the tasks every budget ran; a fixed-size method is
    one point (its first budget). None where there is nothing to draw (a mean over tasks of
    different metrics)."""
    weights, what = _curve_weights(rows, cols)
    if weights is None:
        return None
    found, seen = {}, set()
    for (method, budget), group in sorted(frame(rows).groupby(["method", "budget"])):
        if group["fixed"].all() and method in seen:
            continue
        interval = stats.interval((method, budget), weights)
        if interval is not None:
            found[(method, budget)] = (group, interval)
            seen.add(method)
    return found, what


def pareto(rows: list[dict], cols: Columns, stats: Intervals, title: str, path: Path, interval: str) -> bool:
    """One line per method through its budgets. False where there is nothing to draw."""
    found = _points(rows, cols, stats)
    if found is None:
        return False
    points: dict[str, list[figures.Point]] = defaultdict(list)
    for (method, _), (group, score) in found[0].items():
        points[method].append(_point(group["trainable"].mean(), score))
    lines = [figures.Line(method, method, sorted(pts, key=lambda p: p.x)) for method, pts in points.items()]
    figures.pareto(lines, axis(cols, found[1] + ":"), title, path, interval)
    return True


#: the scatter's x choices: label -> (frame column, aggregation, whether lower is better)
RESOURCES = {"trainable parameters": ("trainable", "mean", True), "training samples/s": ("train_rate", "mean", False),
             "inference samples/s": ("eval_rate", "mean", False), "peak memory (MB)": ("peak", "max", True)}


def scatter(rows: list[dict], cols: Columns, stats: Intervals, title: str) -> Scatter | None:
    """The Pareto plot's data for the HTML page: each row's score against every resource."""
    found = _points(rows, cols, stats)
    if found is None:
        return None
    keys, what = found
    budgets = len({key[1] for key in keys})
    points = []
    for (method, budget), (group, score) in keys.items():
        x = {name: float(group[column].agg(how)) for name, (column, how, _) in RESOURCES.items()}
        low, high = (score.low, score.high) if score.known else (None, None)
        points.append(Point(method, budget, label((method, budget), budgets, bool(group["fixed"].all())),
                            score.estimate, low, high, x))
    scale = 100 if cols.suite_metric in PERCENT else 1
    return Scatter(title, axis(cols, what + ":").label, cols.suite_higher is not False, scale,
                   {name: lower for name, (_, _, lower) in RESOURCES.items()}, tuple(points))


def _examples(rows: list[dict]) -> dict[str, dict[float, int]]:
    """Per task and fraction, how many examples its final runs trained on, as they recorded it
    (a fraction is taken per class, so it is not always the fraction times the split's size)."""
    counts: dict[str, dict[float, list[int]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        n = (r["details"] or {}).get("train_examples")
        if n:
            counts[r["task"]][fraction_of(r)].append(n)
    return {task: {f: round(statistics.median(ns)) for f, ns in by_fraction.items()}
            for task, by_fraction in counts.items()}


def _panels(rows: list[dict], cols: Columns) -> list[tuple[str, int]]:
    """The fraction figure's panels, (name, column): each task that ran more than one fraction, or
    the suite mean where more than ``MAX_TASK_PANELS`` tasks did and every task ran every fraction."""
    fractions = defaultdict(set)
    for r in rows:
        fractions[r["task"]].add(fraction_of(r))
    every = set().union(*fractions.values())
    curved = [t for t in cols.tasks if len(fractions[t]) > 1]
    if len(curved) > MAX_TASK_PANELS and len(cols.tasks) > 1 and all(fractions[t] == every for t in cols.tasks):
        return [(f"mean over {len(cols.tasks)} tasks", cols.summary)]
    return [(t, cols.tasks.index(t)) for t in curved]


def _fractions(rows: list[dict], cols: Columns, known: dict[float, Intervals],
               ) -> tuple[dict[str, dict[float, Judged]], list[Key], dict[Key, str], list[float]]:
    """Per panel and fraction, the judged column; the row keys, their labels and the fractions.
    ``known``: intervals already set up for a fraction (the main table's), reused."""
    budgets = len({r["budget"] for r in rows})
    fractions = sorted({fraction_of(r) for r in rows})
    keys = sorted({(r["method"], r["budget"]) for r in rows})
    fixed = {key: all(not r["size"] for r in rows if (r["method"], r["budget"]) == key) for key in keys}
    labels = {key: label(key, budgets, fixed[key]) for key in keys}
    weights = cols.weights()
    judged: dict[str, dict[float, Judged]] = defaultdict(dict)
    for fraction in fractions:
        at = [r for r in rows if fraction_of(r) == fraction]
        stats = known.get(fraction) or intervals(at)
        without = untrained(frame(at))
        for name, i in _panels(rows, cols):
            if weights[i] is not None:
                judged[name][fraction] = Judged(stats, keys, weights[i], cols.direction(i), cols.chance(i), without,
                                                cols.resolution(i, stats))
    return dict(judged), keys, labels, fractions


def _fraction_table(judged: dict[str, dict[float, Judged]], keys: list[Key], labels: dict[Key, str],
                    fractions: list[float], metric: str | None, examples: dict[str, dict[float, int]]) -> Table:
    table = []
    for panel, columns in judged.items():
        counts = examples.get(panel)
        if counts:
            table.append(Row((Cell(panel), Cell("*training examples*"),
                              *(Cell(f"{counts[f]:,}", counts[f]) if f in counts else Cell("-") for f in fractions))))
        for key in sorted(keys, key=labels.get):
            if sum(key in columns[f].intervals for f in columns) > 1:
                table.append(Row((Cell(panel), Cell(labels[key]),
                                  *(columns[f].cell(key, metric) if f in columns else Cell("-") for f in fractions)),
                                 *key))
    return Table(("task", "method", *map(fmt_fraction, fractions)), tuple(table), "fractions")


def _fraction_lines(judged: dict[str, dict[float, Judged]], keys: list[Key], labels: dict[Key, str]
                    ) -> dict[str, list[figures.Line]]:
    budgets = sorted({key[1] for key in keys})
    panels = {}
    for panel, columns in judged.items():
        lines = []
        for key in keys:
            points = [_point(f, j.intervals[key]) for f, j in sorted(columns.items()) if key in j.intervals]
            if len(points) > 1:  # a row at one fraction (another budget's) is no curve
                style = figures.STYLES[budgets.index(key[1]) % len(figures.STYLES)]
                lines.append(figures.Line(key[0], labels[key], points, style))
        panels[panel] = lines
    return panels


def fraction_section(suite: str, backbone: str, rows: list[dict], known: dict[float, Intervals],
                     figures_dir: Path | None) -> list[Block]:
    """The sample-efficiency subsection: its figure and table."""
    cols = Columns(rows)
    judged, keys, labels, fractions = _fractions(rows, cols, known)
    examples = _examples(rows)
    out: list[Block] = [
        Heading(3, f"{suite} on {backbone}: sample efficiency"),
        Text.of(f"Each method trained on nested fractions of the training split (the smaller inside the larger, fixed "
                f"by the split seed) and tested on the full test split; test {cols.suite_metric}, mean over seeds ± "
                f"half its 95% t interval; bold as above, per fraction (each fraction's column is a family of its "
                f"own).")]
    if figures_dir is not None and judged:
        name = f"{slug(suite)}-{slug(backbone)}-fractions.png"
        figures.fractions(_fraction_lines(judged, keys, labels), axis(cols, ""),
                          f"{suite} on {backbone}, budget {', '.join(budgets(rows))}: test {cols.suite_metric} "
                          f"against the training data", figures_dir / name, examples, "95% t interval over seeds")
        out.append(Figure(f"{figures_dir.name}/{name}",
                          f"{suite} on {backbone}: test {cols.suite_metric} against the data fraction"))
    return [*out, _fraction_table(judged, keys, labels, fractions, cols.suite_metric, examples)]
