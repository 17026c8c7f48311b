"""Render the results store as a markdown leaderboard: per suite and backbone a table of the final
runs (each cell a mean with its 95% interval, a paired comparison with a reference method, bold
only where the best is significantly better than the runner-up, rows at chance said so, reported
numbers below a rule), the hyper-parameters the final runs used, a Pareto figure, and the
sample-efficiency curves and table where runs trained on fractions of the data.

Tables are pandas DataFrames rendered by ``peftbench.tables``; the statistics live in
``peftbench.stats``; the figures in ``peftbench.figures``."""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Hashable
from datetime import datetime
from pathlib import Path

import pandas as pd

from . import figures, tables
from .budget import FIXED
from .outcomes import decode
from .reference import Reported, published
from .stats import RESAMPLES, SEED, Interval, Intervals, verdicts
from .store import Store

#: metrics where a smaller value is better, for suites the registry does not know
LOWER_IS_BETTER = {"mse", "rmse", "mae", "loss", "error", "perplexity"}
PERCENT = {"accuracy"}
#: above this many tasks, fraction curves show the suite mean instead of one panel per task
MAX_TASK_PANELS = 4
#: the method every row is compared with, paired, unless render(against=...) names another
AGAINST = "lora"
TIED = "≈"
CHANCE = "(chance)"

Key = tuple[str, str]  # (method, budget): one row of a table


def fmt_value(value: float, metric: str | None) -> str:
    return f"{value * 100:.1f}" if metric in PERCENT else f"{value:.3g}"


def fmt_interval(interval: Interval, metric: str | None) -> str:
    """``mean ± half-width`` of the 95% interval; the mean alone where there is no interval."""
    text = fmt_value(interval.estimate, metric)
    return text + (f" ± {fmt_value(interval.half_width, metric)}" if interval.known else "")


def fmt_delta(interval: Interval, metric: str | None, higher: bool | None) -> str:
    """``+1.2 [+0.3, +2.1] better``: a paired difference, its interval, and the verdict where the
    interval excludes 0 (in percentage points for accuracy)."""
    def signed(v: float) -> str:
        return f"{v * 100:+.1f}" if metric in PERCENT else f"{v:+.3g}"

    text = signed(interval.estimate)
    if not interval.known:
        return text
    text += f" [{signed(interval.low)}, {signed(interval.high)}]"
    if interval.excludes(0) and higher is not None:
        text += " better" if (interval.low > 0) == higher else " worse"
    return text


def fmt_count(n: float) -> str:
    return f"{n / 1e6:.3f}M" if n >= 1e5 else f"{n / 1e3:.1f}k" if n >= 1e4 else f"{n:,.0f}"


def fmt_rate(samples_per_s: float) -> str:
    """Whole samples/s, with a decimal below 10 (a language model on a CPU trains at about 1)."""
    return f"{samples_per_s:.1f}" if samples_per_s < 10 else f"{samples_per_s:.0f}"


def fmt_fraction(f: float) -> str:
    return f"{f * 100:.3g}%"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


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


# --- the records as a frame ----------------------------------------------------------------------

def frame(records: list[dict]) -> pd.DataFrame:
    """One row per final run, the columns the tables group and average."""
    df = pd.DataFrame.from_records([{
        "method": r["method"], "budget": r["budget"], "task": r["task"], "group": r["group"] or "",
        "seed": r["seed"], "fraction": _fraction(r), "test_metric": r["test_metric"],
        "fixed": not r["size"], "short": r["budget_reached"] == 0, "trainable": r["trainable_params"],
        "total": r["total_params"], "budget_params": r.get("budget_params"),
        "train_rate": r["train_samples_per_s"] or 0.0, "eval_rate": r["eval_samples_per_s"] or 0.0,
        "peak": r["peak_memory_mb"] or 0.0, "head": r.get("head_params") or 0,
    } for r in records])
    return df


def _decoded(r: dict):
    """The run's per-example outcomes (decoded once per record and kept on it), None where it has none."""
    if "_outcomes" not in r:
        r["_outcomes"] = decode(r["outcomes"]) if r.get("outcomes") else None
    return r["_outcomes"]


def _runs(rows: list[dict]) -> dict[Key, dict[str, dict[int, tuple[float, object]]]]:
    """Per row key, task -> seed -> (test metric, decoded outcomes or None), for stats.Intervals."""
    runs: dict = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        runs[(r["method"], r["budget"])][r["task"]][r["seed"]] = (r["test_metric"], _decoded(r))
    return {key: dict(tasks) for key, tasks in runs.items()}


# --- one table -----------------------------------------------------------------------------------

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
        return [*self.tasks, "mean"]

    @property
    def summary(self) -> int:
        """The column of the mean over tasks: the one the Δ column and the Pareto figure use."""
        return len(self.tasks) + (len(self.groups) if len(self.groups) > 1 else 0)

    def weights(self) -> list[dict[str, float] | None]:
        """Per column, task -> weight (None: a mean over tasks of different metrics, not shown)."""
        columns: list[dict[str, float] | None] = [{t: 1.0} for t in self.tasks]

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


class Judged:
    """One column of one table, judged: each row's interval, its mark (best, tied) and whether it is
    at chance. Classification: chance is 1/classes; regression: the untrained model, the rows that
    train nothing (hmoe's ``linear``), compared paired."""

    def __init__(self, stats: Intervals, keys: list[Key], weights: dict[str, float] | None, higher: bool | None,
                 chance: float | None, untrained: list[Key]):
        self.intervals: dict[Key, Interval] = {}
        self.at_chance: dict[Key, bool] = {}
        self.marks: dict[Hashable, str] = {}
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
            self.marks = verdicts({k: iv.estimate for k, iv in self.intervals.items()}, higher,
                                  lambda a, b: stats.paired(a, b, weights), self.at_chance.get)

    def cell(self, key: Key, metric: str | None) -> str:
        if key not in self.intervals:
            return "-"
        text = fmt_interval(self.intervals[key], metric)
        mark = self.marks.get(key)
        text = f"**{text}**" if mark == "best" else f"{TIED} {text}" if mark == "tied" else text
        return text + (f" {CHANCE}" if self.at_chance[key] else "")


def _bold_best(cells: list[list[str]], values: list[list[float | None]], higher: list[bool | None]) -> None:
    """Bold, per column, every cell whose shown value equals the best one (ties as displayed);
    a column where every row shows the same value has no best. For measured resources
    (parameters, throughput, memory), which have no interval."""
    for col, direction in enumerate(higher):
        column = [(row, v[col]) for row, v in enumerate(values) if v[col] is not None]
        shown = {row: cells[row][col] for row, _ in column}
        if direction is None or len(set(shown.values())) < 2:
            continue
        best = (max if direction else min)(v for _, v in column)
        best_text = next(shown[row] for row, v in column if v == best)
        for row, _ in column:
            if shown[row] == best_text:
                cells[row][col] = f"**{cells[row][col]}**"


def _untrained(df: pd.DataFrame) -> list[Key]:
    """Rows that train nothing at all (no backbone parameter, no head): the untrained model."""
    found = df.groupby(["method", "budget"])[["trainable", "head"]].max()
    return [key for key, row in found.iterrows() if row["trainable"] == 0 and row["head"] == 0]


def _table(rows: list[dict], reported: list[Reported], cols: Columns, stats: Intervals,
           against: str) -> tuple[list[str], dict[str, bool]]:
    """The markdown table, and which legend notes it needs (tied, chance, delta, short)."""
    df = frame(rows)
    keys: list[Key] = sorted(df.groupby(["method", "budget"]).groups)
    weights = cols.weights()
    untrained = _untrained(df)
    judged = [Judged(stats, keys, w, cols.direction(i), cols.chance(i), untrained) for i, w in enumerate(weights)]
    resources = df.groupby(["method", "budget"]).agg(
        trainable=("trainable", "mean"), total=("total", "mean"), budget_params=("budget_params", "mean"),
        train=("train_rate", "mean"), evals=("eval_rate", "mean"), peak=("peak", "max"),
        fixed=("fixed", "all"), short=("short", "any"), seeds=("seed", "nunique"))
    delta_name = f"Δ vs {against}"
    summary = weights[cols.summary] if len(weights) > cols.summary else None
    has_reference = summary is not None and any(m == against for m, _ in keys)
    table, other_cells, other_values = [], [], []
    for key in keys:
        method, budget = key
        res = resources.loc[key]
        row = {"method": method + (" †" if res["short"] else ""), "budget": "-" if res["fixed"] else budget}
        row.update({name: j.cell(key, cols.metric_of(i)) for i, (name, j) in enumerate(zip(cols.names(), judged))})
        if has_reference:
            row[delta_name] = _delta_cell(key, against, stats, summary, cols)
        table.append(row)
        train = res["train"]
        other_values.append([res["trainable"], train or None, res["evals"], res["peak"]])
        other_cells.append([f"{fmt_count(res['trainable'])} ({_share(res)})", fmt_rate(train) if train else "-",
                            fmt_rate(res["evals"]), f"{res['peak']:.0f}"])
    _bold_best(other_cells, other_values, [False, True, True, False])
    for row, cells, key in zip(table, other_cells, keys):
        row.update(zip(["trainable (% of budget)", "train/s", "eval/s", "peak MB"], cells))
        row["seeds"] = str(resources.loc[key]["seeds"])
    out = pd.DataFrame(table)
    out = pd.concat([out, _reported_rows(cols, reported, list(out.columns), rows[0]["backbone"])], ignore_index=True)
    notes = {"tied": any(j.marks and "best" not in j.marks.values() for j in judged),
             "best": any("best" in j.marks.values() for j in judged),
             "chance": any(any(j.at_chance.values()) for j in judged), "delta": has_reference,
             "short": bool(resources["short"].any())}
    return tables.markdown(out.fillna("")).splitlines(), notes


def _delta_cell(key: Key, against: str, stats: Intervals, weights: dict[str, float], cols: Columns) -> str:
    """The row's paired difference from ``against`` at the same budget, as the Δ column shows it."""
    method, budget = key
    if method == against:
        return "reference"
    diff = stats.paired(key, (against, budget), weights)
    return fmt_delta(diff, cols.suite_metric, cols.suite_higher) if diff else "-"


def _share(res: pd.Series) -> str:
    """The share of the budget a method reached; fixed-size methods (and stores from before budgets
    were recorded in parameters) show their share of the backbone instead."""
    budget = res["budget_params"]
    if res["fixed"] or budget is None or math.isnan(budget) or not budget:
        return f"{res['trainable'] / res['total'] * 100:.3g}% of backbone"
    return f"{res['trainable'] / budget * 100:.1f}%"


def _reported_rows(cols: Columns, reported: list[Reported], columns: list[str], backbone: str) -> pd.DataFrame:
    """Numbers from papers, below a rule row, labelled with their source and never ranked (bold)."""
    rows: dict[tuple, dict[str, Reported]] = defaultdict(dict)
    for item in reported:
        if item.task in cols.tasks:
            rows[(item.method, item.reported_as, item.reported_backbone, item.source)][item.task] = item
    if not rows:
        return pd.DataFrame(columns=columns)
    out = [{columns[0]: "*reported in papers: not measured here, never ranked*"}]
    for (_, reported_as, model, source), items in sorted(rows.items()):
        on = "" if any(i.backbone == backbone for i in items.values()) else f"; on {model}"
        values = cols.point({t: item.value for t, item in items.items()})
        row = dict.fromkeys(columns, "-")
        row.update({"method": f"{reported_as} — reported ({source}{on})",
                    "trainable (% of budget)": next(iter(items.values())).params or "-"})
        row.update({name: fmt_value(v, cols.metric_of(i)) if v is not None else "-"
                    for i, (name, v) in enumerate(zip(cols.names(), values))})
        out.append(row)
    return pd.DataFrame(out, columns=columns)


def _legend(notes: dict[str, bool], cols: Columns, against: str, untrained: bool, by_examples: bool) -> list[str]:
    lines = []
    if notes["best"] or notes["tied"]:
        lines.append(f"**Bold**: the best in its column, better than the runner-up by a paired 95% interval "
                     f"that excludes 0. {TIED}: no single best: the best and the rows its paired interval "
                     f"cannot tell from it. Neither: the column's best is at chance, or a lone row. In the "
                     f"parameter, throughput and memory columns bold marks the best measured value.")
    if notes["chance"]:
        levels = {t: chance_level(cols.suite, t) for t in cols.tasks}
        if all(level is not None for level in levels.values()):
            what = ("not above chance: the 95% interval's lower end is not above 1/classes ("
                    + ", ".join(f"{t} {fmt_value(v, 'accuracy')}%" for t, v in levels.items()) + ")")
        else:
            what = ("no better than the untrained model (the rows that train nothing, "
                    if untrained else "no better than chance (")
            what += "paired 95% interval of the difference not below 0)" if untrained else "1/classes)"
        lines.append(f"{CHANCE}: {what}; never bold.")
    if notes["delta"]:
        paired = "seeds and test examples" if by_examples else "seeds"
        lines.append(f"Δ vs {against}: the row's {cols.names()[cols.summary]} minus {against}'s at the same "
                     f"budget, on the same {paired}, with its paired 95% interval; *better*/*worse* where the "
                     f"interval excludes 0{' (in percentage points)' if cols.suite_metric in PERCENT else ''}.")
    if notes["short"]:
        lines.append("† cannot land within 1% of the budget: ran at its closest size below (see % of budget).")
    return [line for text in lines for line in (text, "")]


# --- the hyper-parameters of the final runs ------------------------------------------------------

def _number(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _selected(r: dict, metric: str) -> str:
    selected = (r["details"] or {}).get("selected") or {}
    trials = r["settings"].get("trials", 0)
    if selected.get("by") == "defaults":
        return "the method's defaults (untuned)"
    if selected.get("by") == "val":
        val = selected.get("val_metric")
        score = ""
        if isinstance(val, (int, float)):
            # noisy val targets put every regression trial near the noise floor: show the digits that chose
            score = f", val {fmt_value(val, metric) if metric in PERCENT else f'{val:.6g}'}"
        return f"best on val of {trials} trials (slot {selected.get('slot', '?')}{score})"
    return f"{trials} trials; selection not recorded" if trials else "not recorded"


def _hparams_table(rows: list[dict], cols: Columns) -> list[str]:
    """Per method and budget, the hyper-parameters its final runs used and what selected them;
    tasks that share every value share a row."""
    shared = ("lr", "head_lr", "weight_decay")
    settings = pd.DataFrame.from_records([{
        "method": r["method"], "budget": r["budget"], "task": r["task"],
        "size": ", ".join(f"{k}={v}" for k, v in (r["size"] or {}).items()) or "fixed",
        "lr": _number(r["hparams"]["lr"]) if "lr" in r["hparams"] else "-",
        "head lr": _number(r["hparams"]["head_lr"]) if "head_lr" in r["hparams"] else "-",
        "weight decay": _number(r["hparams"]["weight_decay"]) if "weight_decay" in r["hparams"] else "-",
        "method's own": ", ".join(f"{k}={_number(v)}" for k, v in sorted(r["hparams"].items())
                                  if k not in shared) or "-",
        "trials": str(r["settings"].get("trials", 0)), "selected by": _selected(r, r["metric"]),
    } for r in rows])
    values = [c for c in settings.columns if c not in ("method", "budget", "task")]
    # the seeds of one task ran one configuration; should they not, every value is shown
    per_task = settings.groupby(["method", "budget", "task"], sort=False)[values].agg(
        lambda v: " / ".join(dict.fromkeys(v)))
    order = {t: i for i, t in enumerate(cols.tasks)}
    grouped = (per_task.reset_index().sort_values(["method", "budget", "task"], key=lambda c: c.map(order)
                                                  if c.name == "task" else c)
               .groupby(["method", "budget", *values], sort=False)["task"].agg(list).reset_index())
    everything = len(cols.tasks)
    grouped["tasks"] = [f"all {everything}" if len(ts) == everything and everything > 1 else ", ".join(ts)
                        for ts in grouped["task"]]
    return tables.markdown(grouped[["method", "budget", "tasks", *values]]).splitlines()


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

    # the shared space came with ±1% budgets, so with ``budget_params`` (a headless task has no head_lr)
    shared = any("head_lr" in r["hparams"] or r.get("budget_params") is not None for r in rows)
    space = (f"one search space shared by every method (lr and head lr log-uniform in [{LEARNING_RATE[0]:g}, "
             f"{LEARNING_RATE[1]:g}], weight decay in [{WEIGHT_DECAY[0]:g}, {WEIGHT_DECAY[1]:g}]) plus each method's "
             f"own knobs, the first trial at the method's defaults" if shared
             else "each method's lr searched a decade either side of its own default (an earlier protocol)")
    return f"{trials} Optuna trials per task and method on train -> val over {space}; the best on val retrained"


def _intervals_text(by_examples: bool, resamples: int) -> str:
    if by_examples:
        return (f"95% percentile bootstrap, {resamples:,} resamples, each drawing the seeds and (per task) the "
                f"test examples with replacement; the draws are shared by every row, so differences are paired "
                f"by seed and test example (numpy generator seeded {SEED}: the same store gives the same page)")
    return ("95% Student-t interval over seeds only: not every run here carries per-example test outcomes of one "
            "length per task (records from before schema version 4 carry none), so test-set sampling is not "
            "counted; differences are paired by seed; one seed gives no interval")


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{max(minutes, 1)} min"


def _provenance(records: list[dict]) -> list[str]:
    """The commands whose runs (trials included) make the section, each with when it started and how
    long it ran until its last record here, and the machines they ran on."""
    sittings: dict[tuple, list[str]] = defaultdict(list)
    for r in records:
        env = r["env"] or {}
        sittings[(env.get("command"), env.get("started"))].append(r["created_at"])
    commands, untimed = [], 0
    for (command, started), ends in sorted(sittings.items(), key=lambda item: str(item[0][1])):
        if command is None or started is None:
            untimed += len(ends)
            continue
        seconds = (datetime.fromisoformat(max(ends)) - datetime.fromisoformat(started)).total_seconds()
        commands.append(f"`{command}` (started {started}, {_duration(seconds)} until its last run here)")
    if untimed:
        commands.append(f"{untimed} run(s) recorded without their command (before peftbench recorded it)")
    machines = {_machine(r["env"] or {}) for r in records}
    return [f"- **Commands** {'; '.join(commands)}", f"- **Machine** {'; '.join(sorted(machines))}"]


def _machine(env: dict) -> str:
    box = env.get("machine") or {}
    cores = f", {box['cores']} cores" if box.get("cores") else ""
    memory = f", {box['memory_gib']} GiB memory" if box.get("memory_gib") else ""
    return f"{env.get('device', 'unknown device')}{cores}{memory}, {env.get('threads', '?')} torch thread(s) per worker"


def _header(rows: list[dict], backbone: str, higher: bool | None, by_examples: bool, resamples: int) -> list[str]:
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
        f"- **Budget** {', '.join(f'`{b}`' for b in _budgets(rows))}: every method sized to the same trainable "
        f"count (head excluded), within 1% where it can be; adapted modules: "
        f"{_joined(','.join(r['settings'].get('targets') or ['the family default']) for r in rows)}",
        f"- **Tuning** {tuning}; **seeds** {_joined(s.get('seeds', 1) for s in settings)} final runs "
        f"on train+val, each tested once",
        f"- **Recipe** {'; '.join(sorted(recipes))}"
        + (f"; data fractions {', '.join(fmt_fraction(f) for f in fractions)}" if fractions != [1.0] else ""),
        f"- **Metric** test {metric}{scale}, mean over seeds ± half the width of its 95% interval; {direction}; "
        f"bold only where the best is significantly better than the runner-up",
        f"- **Intervals** {_intervals_text(by_examples, resamples)}",
        f"- **Produced by** commit {_joined(r['env'].get('git_commit') for r in rows)}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
    ]


# --- figures and the fraction table ------------------------------------------------------------

def _budgets(rows: list[dict]) -> list[str]:
    """The budgets the sized methods ran at (a fixed-size method's ``fixed`` is none of them)."""
    return sorted({r["budget"] for r in rows if r["budget"] != FIXED}, key=str) or [FIXED]


def _label(key: Key, budgets: int, fixed: bool) -> str:
    return key[0] + (f" @ {key[1]}" if budgets > 1 and not fixed else "")


def _axis(cols: Columns, what: str) -> figures.Axis:
    lower = cols.suite_higher is False
    metric = cols.suite_metric or "metric"
    unit = " (%)" if metric in PERCENT else ""
    note = " (log scale, lower is better)" if lower else ""
    return figures.Axis(f"{what} test {metric}{unit}{note}", lower, 100 if metric in PERCENT else 1)


def _point(x: float, interval: Interval) -> figures.Point:
    return figures.Point(x, interval.estimate, interval.low, interval.high)


def _curve_tasks(rows: list[dict], cols: Columns) -> list[str]:
    """The tasks every sized row ran: all of the suite's, or fewer where some budgets ran only some
    tasks (a budget curve on one task); the Pareto figure and the budget table average these."""
    sized = frame(rows).query("not fixed")
    ran = [set(tasks) for tasks in sized.groupby(["method", "budget"])["task"].unique()]
    common = set.intersection(*ran) if ran else set(cols.tasks)
    return [t for t in cols.tasks if t in common] or cols.tasks


def _curve_weights(rows: list[dict], cols: Columns) -> tuple[dict[str, float] | None, str]:
    """Task weights of the budget comparisons (None: tasks of different metrics) and their label."""
    tasks = _curve_tasks(rows, cols)
    if tasks == cols.tasks:
        what = f"mean over {len(tasks)} tasks" if len(tasks) > 1 else tasks[0]
        return cols.weights()[cols.summary], what
    weights = {t: 1 / len(tasks) for t in tasks} if cols.suite_metric is not None else None
    return weights, tasks[0] if len(tasks) == 1 else f"mean over {', '.join(tasks)}"


def _budget_table(rows: list[dict], cols: Columns, stats: Intervals, against: str) -> list[str]:
    """Every method at every budget over the tasks all budgets ran, with its paired difference from
    ``against`` at the same budget: the main table's mean and Δ need every task of the suite."""
    weights, what = _curve_weights(rows, cols)
    if weights is None:
        return []
    sized = frame(rows).query("not fixed").groupby(["method", "budget"])["trainable"].mean()
    table = []
    for (method, budget), trainable in sorted(sized.items(), key=lambda item: (item[0][0], item[1])):
        found = stats.interval((method, budget), weights)
        table.append({"method": method, "budget": budget, "trainable": fmt_count(trainable),
                      f"{what}: test {cols.suite_metric}": fmt_interval(found, cols.suite_metric) if found else "-",
                      f"Δ vs {against}": _delta_cell((method, budget), against, stats, weights, cols)})
    return tables.markdown(pd.DataFrame(table)).splitlines()


def _pareto(rows: list[dict], cols: Columns, stats: Intervals, title: str, path: Path, interval: str) -> bool:
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
    figures.pareto(lines, _axis(cols, what + ":"), title, path, interval)
    return True


def _examples(rows: list[dict]) -> dict[str, dict[float, int]]:
    """Per task and fraction, how many examples its final runs trained on, as they recorded it
    (a fraction is taken per class, so it is not always the fraction times the split's size)."""
    counts: dict[str, dict[float, list[int]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        n = (r["details"] or {}).get("train_examples")
        if n:
            counts[r["task"]][_fraction(r)].append(n)
    return {task: {f: round(statistics.median(ns)) for f, ns in by_fraction.items()}
            for task, by_fraction in counts.items()}


def _fractions(rows: list[dict], cols: Columns, by_examples: bool, resamples: int, known: dict[float, Intervals],
               ) -> tuple[dict[str, dict[float, Judged]], list[Key], dict[Key, str], list[float]]:
    """Per panel (each task, or the suite mean when there are many) and fraction, the judged
    column; the row keys, their labels and the fractions. ``known``: intervals already set up
    for a fraction (the main table's), reused."""
    budgets = len({r["budget"] for r in rows})
    fractions = sorted({_fraction(r) for r in rows})
    keys = sorted({(r["method"], r["budget"]) for r in rows})
    fixed = {key: all(not r["size"] for r in rows if (r["method"], r["budget"]) == key) for key in keys}
    labels = {key: _label(key, budgets, fixed[key]) for key in keys}
    weights = cols.weights()
    panels = ([(t, i) for i, t in enumerate(cols.tasks)] if len(cols.tasks) <= MAX_TASK_PANELS
              else [(f"mean over {len(cols.tasks)} tasks", cols.summary)])
    judged: dict[str, dict[float, Judged]] = defaultdict(dict)
    for fraction in fractions:
        at = [r for r in rows if _fraction(r) == fraction]
        stats = known.get(fraction) or Intervals(_runs(at), by_examples, resamples)
        untrained = _untrained(frame(at))
        for name, i in panels:
            if weights[i] is not None:
                judged[name][fraction] = Judged(stats, keys, weights[i], cols.direction(i), cols.chance(i), untrained)
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
            if any(key in columns[f].intervals for f in columns):
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
            if points:
                style = figures.STYLES[budgets.index(key[1]) % len(figures.STYLES)]
                lines.append(figures.Line(key[0], labels[key], points, style))
        panels[panel] = lines
    return panels


def _section(suite: str, backbone: str, rows: list[dict], reported: list[Reported], figures_dir: Path | None,
             against: str, resamples: int, every_run: list[dict]) -> list[str]:
    full = [r for r in rows if _fraction(r) == 1.0]
    largest = max(_fraction(r) for r in rows)
    main = full or [r for r in rows if _fraction(r) == largest]
    cols = Columns(main)
    budgets = ", ".join(_budgets(rows))
    # one method for the whole section: the bootstrap where every run kept its outcomes
    by_examples = Intervals.usable(_runs(rows))
    stats = Intervals(_runs(main), by_examples, resamples)
    interval = "95% bootstrap interval" if by_examples else "95% t interval over seeds"
    out = [f"## {suite} on {backbone}", "", *_header(rows, backbone, cols.suite_higher, by_examples, resamples),
           *_provenance(every_run), ""]
    if not full:
        out += [f"No run on the full training split: the table shows the largest fraction, "
                f"{fmt_fraction(largest)}.", ""]
    lines, notes = _table(main, reported, cols, stats, against)
    out += lines + [""]
    out += _legend(notes, cols, against, bool(_untrained(frame(main))), by_examples)
    if not notes["delta"]:
        out += [f"No `{against}` rows here (or no mean over tasks): no paired comparison column.", ""]
    out += ["Hyper-parameters of the final runs (tasks that share every value share a row):", ""]
    out += _hparams_table(main, cols) + [""]
    if figures_dir is not None:
        name = f"{slug(suite)}-{slug(backbone)}-pareto.png"
        if _pareto(main, cols, stats, f"{suite} on {backbone}, budget {budgets}: test {cols.suite_metric} "
                                      f"against trainable parameters", figures_dir / name, interval):
            out += [f"![{suite} on {backbone}: test {cols.suite_metric} against trainable parameters]"
                    f"({figures_dir.name}/{name})", ""]
    if len(_budgets(rows)) > 1 and _curve_tasks(main, cols) != cols.tasks:
        out += [f"### {suite} on {backbone}: budgets", "",
                f"Every method at every budget, on the tasks every budget ran; mean over seeds ± half its "
                f"{interval}, and Δ against `{against}` at the same budget, paired as above.", ""]
        out += _budget_table(main, cols, stats, against) + [""]
    if len({_fraction(r) for r in rows}) > 1:
        fcols = Columns(rows)
        judged, keys, labels, fractions = _fractions(rows, fcols, by_examples, resamples,
                                                     {_fraction(main[0]): stats})
        examples = _examples(rows)
        out += [f"### {suite} on {backbone}: sample efficiency", "",
                f"Each method trained on nested fractions of the training split (the smaller inside the larger, "
                f"fixed by the split seed) and tested on the full test split; test {fcols.suite_metric}, "
                f"mean over seeds ± half its {interval}; bold and {TIED} as above, per fraction.", ""]
        if figures_dir is not None:
            name = f"{slug(suite)}-{slug(backbone)}-fractions.png"
            figures.fractions(_fraction_lines(judged, keys, labels), _axis(fcols, ""),
                              f"{suite} on {backbone}, budget {budgets}: test {fcols.suite_metric} against the "
                              f"training data", figures_dir / name, examples, interval)
            out += [f"![{suite} on {backbone}: test {fcols.suite_metric} against the data fraction]"
                    f"({figures_dir.name}/{name})", ""]
        out += _fraction_table(judged, keys, labels, fractions, fcols.suite_metric, examples) + [""]
    return out


def render(store: Store, out_path: str | Path | None = None, *, against: str = AGAINST,
           resamples: int = RESAMPLES, notes: str | None = None) -> str:
    """The leaderboard's markdown; with ``out_path`` (where the markdown goes) its figures are
    written to ``figures/`` beside it and embedded with relative links. ``against`` names the
    method every row is compared with, paired (the "Δ vs" column); ``resamples`` is the number
    of bootstrap resamples behind every interval; ``notes`` (markdown) goes under the title as written."""
    records = most_tuned([r for r in store.records(status="ok") if r["phase"] == "final"])
    out = ["# peftbench leaderboard", ""] + ([notes.strip(), ""] if notes else [])
    if not records:
        return "\n".join(out + ["No finished runs in the store yet: run `peftbench run` first.", ""])
    out += ["Final runs only: each method tuned with the same number of trials, retrained with each seed and "
            "tested once. Each score is the mean over seeds ± half the width of its 95% confidence interval, "
            "and bold needs a paired interval against the runner-up that excludes 0 (each section says how "
            "its intervals were computed). Trainable parameters exclude the classifier head, which every "
            "method trains; throughput in samples per second; peak memory of training.", ""]
    figures_dir = Path(out_path).parent / "figures" if out_path is not None else None
    reported = published()
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["suite"], r["backbone"])].append(r)
    every_run: dict[tuple, list[dict]] = defaultdict(list)
    for r in store.records():
        every_run[(r["suite"], r["backbone"])].append(r)
    for (suite, backbone), rows in sorted(groups.items()):
        out += _section(suite, backbone, rows, [p for p in reported if p.suite == suite], figures_dir,
                        against, resamples, every_run[(suite, backbone)])
    failed = store.records(status="failed")
    if failed:
        out += ["## Failed runs", ""]
        out += tables.markdown(pd.DataFrame(
            [{k: r[k] for k in ("suite", "task", "method", "phase", "seed", "error")} for r in failed],
            columns=["suite", "task", "method", "phase", "seed", "error"])).splitlines()
        out += [""]
    return "\n".join(out)
