"""The leaderboard's curves: metric against trainable parameters (the Pareto figure and, where
budgets ran on some of a suite's tasks, the budgets table) and against the data fraction (the
sample-efficiency figure and table)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

import pandas as pd

from . import figures, tables
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


def budget_table(rows: list[dict], cols: Columns, stats: Intervals, against: str) -> list[str]:
    """Every method at every budget over the tasks all budgets ran, with its paired difference from
    ``against`` at the same budget: the main table's mean and Δ need every task of the suite."""
    found = budget_deltas(rows, cols, stats, against)
    if found is None:
        return []
    (sized, deltas), (weights, what) = found, _curve_weights(rows, cols)
    table = []
    for key in sorted(sized.index):
        interval = stats.interval(key, weights)
        score = fmt_interval(interval, cols.suite_metric) if interval else "-"
        table.append({"method": key[0], "budget": key[1], "trainable": fmt_count(sized[key]),
                      f"{what}: test {cols.suite_metric}": score,
                      f"Δ vs {against}": deltas.cell(key, 0, cols.suite_metric)})
    return [f"Family: the {deltas.family} paired differences of this table, Holm-corrected.", "",
            *tables.markdown(pd.DataFrame(table)).splitlines()]


def pareto(rows: list[dict], cols: Columns, stats: Intervals, title: str, path: Path, interval: str) -> bool:
    """One line per method through its budgets; a fixed-size method is one point (its first budget).
    False where there is nothing to draw (a mean over tasks of different metrics)."""
    weights, what = _curve_weights(rows, cols)
    if weights is None:
        return False
    df = frame(rows)
    points: dict[str, list[figures.Point]] = defaultdict(list)
    for (method, budget), group in sorted(df.groupby(["method", "budget"])):
        if group["fixed"].all() and points.get(method):
            continue
        found = stats.interval((method, budget), weights)
        if found is not None:
            points[method].append(_point(group["trainable"].mean(), found))
    lines = [figures.Line(method, method, sorted(pts, key=lambda p: p.x)) for method, pts in points.items()]
    figures.pareto(lines, axis(cols, what + ":"), title, path, interval)
    return True


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
                    fractions: list[float], metric: str | None, examples: dict[str, dict[float, int]]
                    ) -> list[str]:
    table = []
    for panel, columns in judged.items():
        counts = examples.get(panel)
        if counts:
            table.append({"task": panel, "method": "*training examples*",
                          **{fmt_fraction(f): f"{counts[f]:,}" if f in counts else "-" for f in fractions}})
        for key in sorted(keys, key=labels.get):
            if sum(key in columns[f].intervals for f in columns) > 1:
                table.append({"task": panel, "method": labels[key],
                              **{fmt_fraction(f): columns[f].cell(key, metric) if f in columns else "-"
                                 for f in fractions}})
    return tables.markdown(pd.DataFrame(table, columns=["task", "method", *map(fmt_fraction, fractions)])
                           .fillna("-")).splitlines()


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
                     figures_dir: Path | None) -> list[str]:
    """The sample-efficiency subsection: its figure and table."""
    cols = Columns(rows)
    judged, keys, labels, fractions = _fractions(rows, cols, known)
    examples = _examples(rows)
    out = [f"### {suite} on {backbone}: sample efficiency", "",
           f"Each method trained on nested fractions of the training split (the smaller inside the larger, fixed by "
           f"the split seed) and tested on the full test split; test {cols.suite_metric}, mean over seeds ± half its "
           f"95% t interval; bold as above, per fraction (each fraction's column is a family of its own).", ""]
    if figures_dir is not None and judged:
        name = f"{slug(suite)}-{slug(backbone)}-fractions.png"
        figures.fractions(_fraction_lines(judged, keys, labels), axis(cols, ""),
                          f"{suite} on {backbone}, budget {', '.join(budgets(rows))}: test {cols.suite_metric} "
                          f"against the training data", figures_dir / name, examples, "95% t interval over seeds")
        out += [f"![{suite} on {backbone}: test {cols.suite_metric} against the data fraction]"
                f"({figures_dir.name}/{name})", ""]
    return out + _fraction_table(judged, keys, labels, fractions, cols.suite_metric, examples) + [""]
