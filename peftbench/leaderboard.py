"""Render the results store as a markdown leaderboard: per suite and backbone a table of the final
runs (best value per column in bold, reported numbers below a rule), a Pareto figure, and the
sample-efficiency curves and table where runs trained on fractions of the data."""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from . import figures
from .reference import Reported, published
from .store import Store

#: metrics where a smaller value is better, for suites the registry does not know
LOWER_IS_BETTER = {"mse", "rmse", "mae", "loss", "error", "perplexity"}
PERCENT = {"accuracy"}
#: above this many tasks, fraction curves show the suite mean instead of one panel per task
MAX_TASK_PANELS = 4


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt_value(value: float, metric: str) -> str:
    return f"{value * 100:.1f}" if metric in PERCENT else f"{value:.3g}"


def fmt_metric(values: list[float], metric: str) -> str:
    mean, std = mean_std(values)
    return fmt_value(mean, metric) + (f" ± {fmt_value(std, metric)}" if len(values) > 1 else "")


def fmt_count(n: float) -> str:
    return f"{n / 1e6:.3f}M" if n >= 1e5 else f"{n / 1e3:.1f}k" if n >= 1e4 else f"{n:,.0f}"


def fmt_rate(samples_per_s: float) -> str:
    """Whole samples/s, with a decimal below 10 (a language model on a CPU trains at about 1)."""
    return f"{samples_per_s:.1f}" if samples_per_s < 10 else f"{samples_per_s:.0f}"


def fmt_fraction(f: float) -> str:
    return f"{f * 100:.3g}%"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def by_seed(group: list[dict]) -> Callable[[str], dict[int, float]]:
    """A task's test values by seed, among ``group``'s runs."""
    return lambda task: {r["seed"]: r["test_metric"] for r in group if r["task"] == task}


def most_tuned(records: list[dict]) -> list[dict]:
    """Per cell, the final runs that followed the most trials: a study continued with a larger
    --trials supersedes its earlier final runs, which stay in the store."""
    def cell(r):
        return r["suite"], r["task"], r["method"], r["budget"], r["backbone"], r["data_fraction"]

    most: dict[tuple, int] = defaultdict(int)
    for r in records:
        most[cell(r)] = max(most[cell(r)], r["settings"].get("trials", 0))
    return [r for r in records if r["settings"].get("trials", 0) == most[cell(r)]]


def _fraction(r: dict) -> float:
    return 1.0 if r["data_fraction"] is None else r["data_fraction"]


def higher_is_better(suite: str, task: str, metric: str) -> bool:
    """The task plugin says; a suite no installed plugin provides is judged by its metric's name."""
    from . import registry

    found = registry.tasks().loaded.get(suite)
    for t in getattr(found, "tasks", ()):
        if t.name == task:
            return t.higher_is_better
    return metric not in LOWER_IS_BETTER


# --- one table ---------------------------------------------------------------------------------

class Columns:
    """The metric columns of a suite's table: tasks, group means when the tasks span several
    groups (VTAB: natural, specialized, structured), the mean of the tasks and of the groups."""

    def __init__(self, rows: list[dict]):
        groups: dict[str, list[str]] = defaultdict(list)
        for r in sorted(rows, key=lambda r: (r["group"] or "", r["task"])):
            if r["task"] not in groups[r["group"] or ""]:
                groups[r["group"] or ""].append(r["task"])
        self.groups = dict(groups)
        self.tasks = [t for tasks in self.groups.values() for t in tasks]
        self.metric = {r["task"]: r["metric"] for r in rows}
        metrics = set(self.metric.values())
        self.suite_metric = metrics.pop() if len(metrics) == 1 else None
        self.higher = {t: higher_is_better(rows[0]["suite"], t, self.metric[t]) for t in self.tasks}
        directions = set(self.higher.values())
        self.suite_higher = directions.pop() if len(directions) == 1 else None

    def names(self) -> list[str]:
        if len(self.groups) > 1:
            return [*self.tasks, *(f"{g} mean" for g in self.groups), f"mean ({len(self.tasks)} tasks)",
                    "mean of groups"]
        return [*self.tasks, "mean"]

    def values(self, task_values: Callable[[str], dict[int, float]]) -> list[list[float] | None]:
        """Per column, the values over seeds: a task's own, or per seed the mean over tasks
        (over the seeds every task has); None where a task is missing."""
        per_task = {t: task_values(t) for t in self.tasks}

        def mean_over(tasks: list[str]) -> list[float] | None:
            if self.suite_metric is None or any(not per_task[t] for t in tasks):
                return None
            seeds = set.intersection(*(set(per_task[t]) for t in tasks))
            return [statistics.fmean(per_task[t][s] for t in tasks) for s in sorted(seeds)] or None

        columns = [list(per_task[t].values()) or None for t in self.tasks]
        if len(self.groups) > 1:
            group_means = [mean_over(tasks) for tasks in self.groups.values()]
            of_groups = None
            if all(group_means) and len({len(g) for g in group_means}) == 1:
                of_groups = [statistics.fmean(vals) for vals in zip(*group_means)]
            return columns + group_means + [mean_over(self.tasks), of_groups]
        return columns + [mean_over(self.tasks)]

    def direction(self, index: int) -> bool | None:
        return self.higher[self.tasks[index]] if index < len(self.tasks) else self.suite_higher

    def metric_of(self, index: int) -> str | None:
        return self.metric[self.tasks[index]] if index < len(self.tasks) else self.suite_metric


def _bold_best(cells: list[list[str]], values: list[list[float | None]], higher: list[bool | None]) -> None:
    """Bold, per column, every cell whose shown value equals the best one (ties as displayed);
    a column where every row shows the same value has no best."""
    for col, direction in enumerate(higher):
        column = [(row, v[col]) for row, v in enumerate(values) if v[col] is not None]
        shown = {row: cells[row][col].split(" ±")[0] for row, _ in column}
        if direction is None or len(set(shown.values())) < 2:
            continue
        best = (max if direction else min)(v for _, v in column)
        best_text = next(shown[row] for row, v in column if v == best)
        for row, _ in column:
            if shown[row] == best_text:
                cells[row][col] = f"**{cells[row][col]}**"


def _table(rows: list[dict], reported: list[Reported]) -> list[str]:
    cols = Columns(rows)
    by_method: dict[tuple, list[dict]] = defaultdict(list)  # (method, budget) -> runs
    for r in rows:
        by_method[(r["method"], r["budget"])].append(r)
    header = ["method", "budget", *cols.names(), "trainable (% of budget)", "train/s", "eval/s", "peak MB", "seeds"]
    names, metric_cells, metric_values, other_cells, other_values = [], [], [], [], []
    for (method, budget), group in sorted(by_method.items()):
        fixed = all(not r["size"] for r in group)  # linear, full: reference points, no budget
        short = any(r["budget_reached"] == 0 for r in group)
        names.append([method + (" †" if short else ""), "-" if fixed else budget])
        columns = cols.values(by_seed(group))
        metric_values.append([statistics.fmean(v) if v else None for v in columns])
        metric_cells.append([fmt_metric(v, cols.metric_of(i)) if v else "-" for i, v in enumerate(columns)])
        trainable = statistics.fmean(r["trainable_params"] for r in group)
        train = statistics.fmean(r["train_samples_per_s"] or 0 for r in group)
        evals = statistics.fmean(r["eval_samples_per_s"] or 0 for r in group)
        peak = max(r["peak_memory_mb"] or 0 for r in group)
        other_values.append([trainable, train or None, evals, peak])
        other_cells.append([f"{fmt_count(trainable)} ({_share(group, trainable, fixed)})",
                            fmt_rate(train) if train else "-", fmt_rate(evals), f"{peak:.0f}"])
        names[-1].append(str(len({r["seed"] for r in group})))
    _bold_best(metric_cells, metric_values, [cols.direction(i) for i in range(len(cols.names()))])
    _bold_best(other_cells, other_values, [False, True, True, False])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, metric, other in zip(names, metric_cells, other_cells):
        lines.append("| " + " | ".join([*name[:2], *metric, *other, name[2]]) + " |")
    return lines + _reported_rows(cols, reported, len(header), rows[0]["backbone"])


def _share(group: list[dict], trainable: float, fixed: bool) -> str:
    """The share of the budget a method reached; fixed-size methods (and stores from before budgets
    were recorded in parameters) show their share of the backbone instead."""
    budget = [r["budget_params"] for r in group if r.get("budget_params")]
    if fixed or not budget:
        return f"{trainable / statistics.fmean(r['total_params'] for r in group) * 100:.3g}% of backbone"
    return f"{trainable / statistics.fmean(budget) * 100:.1f}%"


def _reported_rows(cols: Columns, reported: list[Reported], width: int, backbone: str) -> list[str]:
    """Numbers from papers, below a rule row, labelled with their source and never ranked (bold)."""
    rows: dict[tuple, dict[str, Reported]] = defaultdict(dict)
    for item in reported:
        if item.task in cols.tasks:
            rows[(item.method, item.reported_as, item.reported_backbone, item.source)][item.task] = item
    if not rows:
        return []
    lines = ["| *reported in papers: not measured here, never ranked* |" + " |" * (width - 1)]
    for (_, reported_as, model, source), items in sorted(rows.items()):
        on = "" if any(i.backbone == backbone for i in items.values()) else f"; on {model}"
        columns = cols.values(lambda t, items=items: {0: items[t].value} if t in items else {})
        cells = [fmt_metric(v, cols.metric_of(i)) if v else "-" for i, v in enumerate(columns)]
        params = next(iter(items.values())).params or "-"
        lines.append("| " + " | ".join([f"{reported_as} — reported ({source}{on})", "-", *cells, params,
                                        "-", "-", "-", "-"]) + " |")
    return lines


# --- the header ----------------------------------------------------------------------------------

def _recipe(settings: dict, scored: str | None) -> str:
    size = f", {settings['image_size']} px" if settings.get("image_size") else ""
    caps = "".join(f", {what} capped at the first {settings[k]:,} examples"
                   for k, what in (("max_train_examples", "training"), ("max_eval_examples", "val and test"))
                   if settings.get(k))
    scoring = {"loglik": ", answers scored by the log-likelihood of each option's label",
               "text": ", answers scored by the log-likelihood of each option's text",
               "generate": ", answers generated greedily and parsed"}.get(scored, "")
    draws = f", {settings['epoch_samples']:,} examples drawn per epoch" if settings.get("epoch_samples") else ""
    epochs = settings["epochs"]
    return f"{epochs} epoch{'s' * (epochs != 1)}, batch {settings['batch_size']}{size}{draws}{caps}{scoring}"


def _joined(values) -> str:
    return ", ".join(str(v) for v in sorted(set(values), key=str))


def _untuned(rows: list[dict]) -> str:
    """What untuned rows ran at: each method's own published defaults, so say which."""
    lrs = {r["method"]: r["hparams"].get("lr") for r in rows if r["hparams"].get("lr") is not None}
    heads = {r["hparams"].get("head_lr") for r in rows} - {None}
    text = ("**untuned**: each method's published default hyper-parameters, so the rows differ in step size "
            f"(lr {', '.join(f'{m} {lr:g}' for m, lr in sorted(lrs.items()))}")
    if heads:
        return text + f"; head lr {_joined(f'{h:g}' for h in heads)} for every method)"
    return text + "; the head trained at the method's lr)"


def _tuned(rows: list[dict], trials: str) -> str:
    from .tuning import LEARNING_RATE, WEIGHT_DECAY

    shared = any("head_lr" in r["hparams"] for r in rows)
    space = (f"one search space shared by every method (lr and head lr log-uniform in [{LEARNING_RATE[0]:g}, "
             f"{LEARNING_RATE[1]:g}], weight decay in [{WEIGHT_DECAY[0]:g}, {WEIGHT_DECAY[1]:g}]) plus each method's "
             f"own knobs, the first trial at the method's defaults" if shared
             else "each method's lr searched a decade either side of its own default (an earlier protocol)")
    return f"{trials} Optuna trials per task and method on train -> val over {space}; the best on val retrained"


def _header(rows: list[dict], backbone: str, higher: bool | None) -> list[str]:
    settings = [r["settings"] for r in rows]
    recipes = {_recipe(r["settings"], (r["details"] or {}).get("eval_mode")) for r in rows}
    trials = _joined(s.get("trials", 0) for s in settings)
    tuning = _untuned(rows) if trials == "0" else _tuned(rows, trials)
    versions = rows[-1]["env"].get("packages", {})
    metric = _joined(r["metric"] for r in rows)
    direction = {True: "higher is better", False: "lower is better", None: "see each task"}[higher]
    scale = " (%)" if metric in PERCENT else ""
    fractions = sorted({_fraction(r) for r in rows})
    return [
        f"- **Backbone** `{backbone}` ({fmt_count(rows[0]['total_params'])} parameters, frozen unless a method "
        f"trains it); device {_joined(r['env'].get('device') for r in rows)}",
        f"- **Budget** {_joined('`%s`' % r['budget'] for r in rows)}: every method sized to the same trainable "
        f"count (head excluded), within 1% where it can be; adapted modules: "
        f"{_joined(','.join(r['settings'].get('targets') or ['the family default']) for r in rows)}",
        f"- **Tuning** {tuning}; **seeds** {_joined(s.get('seeds', 1) for s in settings)} final runs "
        f"on train+val, each tested once",
        f"- **Recipe** {'; '.join(sorted(recipes))}"
        + (f"; data fractions {', '.join(fmt_fraction(f) for f in fractions)}" if fractions != [1.0] else ""),
        f"- **Metric** test {metric}{scale}, mean ± std over seeds; {direction}; best measured value per "
        f"column in bold",
        f"- **Produced by** commit {_joined(r['env'].get('git_commit') for r in rows)}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
    ]


# --- figures and the fraction table ------------------------------------------------------------

def _label(r: dict, budgets: int) -> str:
    return r["method"] + (f" @ {r['budget']}" if budgets > 1 and r["size"] else "")


def _axis(cols: Columns, what: str) -> figures.Axis:
    lower = cols.suite_higher is False
    metric = cols.suite_metric or "metric"
    unit = " (%)" if metric in PERCENT else ""
    note = " (log scale, lower is better)" if lower else ""
    return figures.Axis(f"{what} test {metric}{unit}{note}", lower, 100 if metric in PERCENT else 1)


def _pareto(rows: list[dict], cols: Columns, title: str, path: Path) -> None:
    budgets = len({r["budget"] for r in rows})
    by_label: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_label[_label(r, budgets)].append(r)
    points = []
    for label, group in sorted(by_label.items()):
        mean = cols.values(by_seed(group))[len(cols.tasks)]
        if mean:
            m, s = mean_std(mean)
            points.append(figures.Point(label, statistics.fmean(r["trainable_params"] for r in group), m, s))
    what = f"mean over {len(cols.tasks)} tasks:" if len(cols.tasks) > 1 else f"{cols.tasks[0]}:"
    figures.pareto(points, _axis(cols, what), title, path)


def _panels(rows: list[dict], cols: Columns) -> dict[str, dict[str, dict[float, list[float]]]]:
    """panel (task, or the suite mean) -> method label -> fraction -> values over seeds."""
    budgets = len({r["budget"] for r in rows})
    panels: dict = defaultdict(lambda: defaultdict(dict))
    per_task = len(cols.tasks) <= MAX_TASK_PANELS
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        cells[(_label(r, budgets), _fraction(r))].append(r)
    for (label, fraction), group in sorted(cells.items()):
        columns = cols.values(by_seed(group))
        if per_task:
            for task, values in zip(cols.tasks, columns):
                if values:
                    panels[task][label][fraction] = values
        elif columns[len(cols.tasks)]:
            panels[f"mean over {len(cols.tasks)} tasks"][label][fraction] = columns[len(cols.tasks)]
    return panels


def _examples(rows: list[dict]) -> dict[str, int]:
    """Full training-set size per task, where the runs recorded how many examples they trained on."""
    sizes = {}
    for task in {r["task"] for r in rows}:
        counts = [r["details"].get("train_examples") / _fraction(r) for r in rows
                  if r["task"] == task and (r["details"] or {}).get("train_examples")]
        if counts:
            sizes[task] = round(statistics.median(counts))
    return sizes


def _fraction_table(panels: dict, cols: Columns, examples: dict[str, int]) -> list[str]:
    fractions = sorted({f for lines in panels.values() for points in lines.values() for f in points})
    lines = ["| task | method | " + " | ".join(fmt_fraction(f) for f in fractions) + " |",
             "|" + "---|" * (len(fractions) + 2)]
    metric, higher = cols.suite_metric or "", cols.suite_higher
    for panel, methods in panels.items():
        n = examples.get(panel)
        labels = sorted(methods)
        cells = [[fmt_metric(methods[m][f], metric) if f in methods[m] else "-" for f in fractions] for m in labels]
        values = [[statistics.fmean(methods[m][f]) if f in methods[m] else None for f in fractions] for m in labels]
        _bold_best(cells, values, [higher] * len(fractions))
        if n:
            counts = " | ".join(f"{round(f * n):,}" for f in fractions)
            lines.append(f"| {panel} | *training examples* | {counts} |")
        lines += [f"| {panel} | {m} | " + " | ".join(c) + " |" for m, c in zip(labels, cells)]
    return lines


def _section(suite: str, backbone: str, rows: list[dict], reported: list[Reported],
             figures_dir: Path | None) -> list[str]:
    full = [r for r in rows if _fraction(r) == 1.0]
    largest = max(_fraction(r) for r in rows)
    main = full or [r for r in rows if _fraction(r) == largest]
    cols = Columns(main)
    budgets = _joined(r["budget"] for r in rows)
    out = [f"## {suite} on {backbone}", "", *_header(rows, backbone, cols.suite_higher), ""]
    if not full:
        out += [f"No run on the full training split: the table shows the largest fraction, "
                f"{fmt_fraction(largest)}.", ""]
    out += _table(main, reported) + [""]
    if any(r["budget_reached"] == 0 for r in main):
        out += ["† cannot land within 1% of the budget: ran at its closest size below (see % of budget).", ""]
    if figures_dir is not None:
        name = f"{slug(suite)}-{slug(backbone)}-pareto.png"
        _pareto(main, cols, f"{suite} on {backbone}, budget {budgets}: test {cols.suite_metric} against "
                            f"trainable parameters", figures_dir / name)
        out += [f"![{suite} on {backbone}: test {cols.suite_metric} against trainable parameters]"
                f"({figures_dir.name}/{name})", ""]
    if len({_fraction(r) for r in rows}) > 1:
        fcols = Columns(rows)
        panels = _panels(rows, fcols)
        examples = _examples(rows)
        out += [f"### {suite} on {backbone}: sample efficiency", "",
                f"Each method trained on nested fractions of the training split (the smaller inside the larger, "
                f"fixed by the split seed) and tested on the full test split; test {fcols.suite_metric}, "
                f"mean ± std over seeds.", ""]
        if figures_dir is not None:
            name = f"{slug(suite)}-{slug(backbone)}-fractions.png"
            figures.fractions({p: {m: [figures.Point(m, f, *mean_std(v)) for f, v in pts.items()]
                                   for m, pts in lines.items()} for p, lines in panels.items()},
                              _axis(fcols, ""), f"{suite} on {backbone}, budget {budgets}: test "
                              f"{fcols.suite_metric} against the training data", figures_dir / name,
                              examples)
            out += [f"![{suite} on {backbone}: test {fcols.suite_metric} against the data fraction]"
                    f"({figures_dir.name}/{name})", ""]
        out += _fraction_table(panels, fcols, examples) + [""]
    return out


def render(store: Store, out_path: str | Path | None = None) -> str:
    """The leaderboard's markdown; with ``out_path`` (where the markdown goes) its figures are
    written to ``figures/`` beside it and embedded with relative links."""
    records = most_tuned([r for r in store.records(status="ok") if r["phase"] == "final"])
    out = ["# peftbench leaderboard", ""]
    if not records:
        return "\n".join(out + ["No finished runs in the store yet: run `peftbench run` first.", ""])
    out += ["Final runs only: each method tuned with the same number of trials, retrained with each seed and "
            "tested once. Trainable parameters exclude the classifier head, which every method trains; "
            "throughput in samples per second; peak memory of training.", ""]
    figures_dir = Path(out_path).parent / "figures" if out_path is not None else None
    reported = published()
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["suite"], r["backbone"])].append(r)
    for (suite, backbone), rows in sorted(groups.items()):
        out += _section(suite, backbone, rows, [p for p in reported if p.suite == suite], figures_dir)
    failed = store.records(status="failed")
    if failed:
        out += ["## Failed runs", "", "| suite | task | method | phase | seed | error |", "|---|---|---|---|---|---|"]
        out += [f"| {r['suite']} | {r['task']} | {r['method']} | {r['phase']} | {r['seed']} | {r['error']} |"
                for r in failed]
        out += [""]
    return "\n".join(out)
