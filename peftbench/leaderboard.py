"""Render the results store as a markdown leaderboard: per suite and backbone a table of the final
runs (each cell a mean over seeds with its 95% interval, bold for the rows no other row beats after
correction, rows at chance said so, reported numbers below a rule), each row's paired differences
from a reference method with corrected verdicts and the effects the tests could detect, the
suite's aggregates (mean, IQM, probability of improvement, performance profiles), the
hyper-parameters and provenance of the final runs, how the tuning went, a Pareto figure, and the
budget and sample-efficiency curves where runs trained at several budgets or fractions.

Judgements live in ``peftbench.judging`` (statistics in ``peftbench.stats`` and
``peftbench.aggregates``), the header and provenance in ``peftbench.provenance``, the curves in
``peftbench.curves``, the tuning report in ``peftbench.tuning_report``; tables are pandas
DataFrames rendered by ``peftbench.tables``."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pandas as pd

from . import aggregates, curves, figures, provenance, tables, tuning_section
from .formats import PERCENT, fmt_count, fmt_fraction, fmt_rate, fmt_value, slug
from .judging import (CHANCE, Columns, Deltas, Judged, Key, chance_level, fraction_of, frame, intervals,
                      most_tuned, untrained)
from .reference import Reported, published
from .stats import ALPHA, Intervals, detectable_effect
from .store import Store

#: the method every row is compared with, paired, unless render(against=...) names another
AGAINST = "lora"


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


def _table(rows: list[dict], reported: list[Reported], cols: Columns,
           stats: Intervals) -> tuple[list[str], dict[str, bool]]:
    """The markdown table, and which legend notes it needs (best, chance, short)."""
    df = frame(rows)
    keys: list[Key] = sorted(df.groupby(["method", "budget"]).groups)
    weights = cols.weights()
    without = untrained(df)
    judged = [Judged(stats, keys, w, cols.direction(i), cols.chance(i), without, cols.resolution(i, stats))
              for i, w in enumerate(weights)]
    resources = df.groupby(["method", "budget"]).agg(
        trainable=("trainable", "mean"), total=("total", "mean"), budget_params=("budget_params", "mean"),
        train=("train_rate", "mean"), evals=("eval_rate", "mean"), peak=("peak", "max"),
        fixed=("fixed", "all"), short=("short", "any"), seeds=("seed", "nunique"))
    table, other_cells, other_values = [], [], []
    for key in keys:
        method, budget = key
        res = resources.loc[key]
        row = {"method": method + (" †" if res["short"] else ""), "budget": "-" if res["fixed"] else budget}
        row.update({name: j.cell(key, cols.metric_of(i)) for i, (name, j) in enumerate(zip(cols.names(), judged))})
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
    notes = {"best": any(j.best for j in judged), "chance": any(any(j.at_chance.values()) for j in judged),
             "short": bool(resources["short"].any())}
    return tables.markdown(out.fillna("")).splitlines(), notes


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


def _legend(notes: dict[str, bool], cols: Columns, has_untrained: bool) -> list[str]:
    lines = []
    if notes["best"]:
        lines.append("**Bold**: no other row is better: every pair of rows in the column is compared by a paired t "
                     "test over their shared seeds, and the column's pairs are one family, Holm-corrected "
                     f"(family-wise error {ALPHA:.0%}); the bold rows cannot be told from the best. A column "
                     "with one seed per row tests nothing and bolds nothing. In the parameter, throughput and "
                     "memory columns bold marks the best measured value.")
    if notes["chance"]:
        levels = {t: chance_level(cols.suite, t) for t in cols.tasks}
        if all(level is not None for level in levels.values()):
            what = ("not above chance: the 95% interval's lower end is not above 1/classes ("
                    + ", ".join(f"{t} {fmt_value(v, 'accuracy')}%" for t, v in levels.items()) + ")")
        else:
            what = ("no better than the untrained model (the rows that train nothing, "
                    if has_untrained else "no better than chance (")
            what += "paired 95% interval of the difference not below 0)" if has_untrained else "1/classes)"
        lines.append(f"{CHANCE}: {what}; never bold.")
    if notes["short"]:
        lines.append("† cannot land within 1% of the budget: ran at its closest size below (see % of budget).")
    return [line for text in lines for line in (text, "")]


def _complete(rows: list[dict], cols: Columns) -> list[Key]:
    """The rows that ran every task of the table (all of them, where none did): the budget curve's
    rows that ran some tasks only are compared in the budgets table instead."""
    keys: list[Key] = sorted({(r["method"], r["budget"]) for r in rows})
    ran = frame(rows).groupby(["method", "budget"])["task"].nunique()
    complete = [key for key in keys if ran[key] == len(cols.tasks)]
    return complete or keys


def _deltas(rows: list[dict], cols: Columns, stats: Intervals, against: str) -> tuple[list[str], Deltas | None]:
    """Each row's paired difference from ``against`` at its budget in every column, one family of
    tests, with the minimum detectable effect of each column."""
    keys = _complete(rows, cols)
    if not any(m == against for m, _ in keys):
        return [f"No `{against}` rows here: no paired differences.", ""], None
    weights = cols.weights()
    deltas = Deltas(stats, keys, against, [(w, cols.direction(i), cols.resolution(i, stats))
                                           for i, w in enumerate(weights)])
    names = cols.names()
    table = [{"method": key[0], "budget": key[1],
              **{name: deltas.cell(key, i, cols.metric_of(i)) for i, name in enumerate(names) if weights[i]}}
             for key in keys if key[0] != against and any((key, i) in deltas.diffs for i in range(len(names)))]
    if not table:
        return [f"No row shares a seed with `{against}` at its budget: no paired differences.", ""], None
    seeds = max(d.n for d in deltas.diffs.values())
    detect = {"method": "*minimum detectable effect*", "budget": f"{seeds} seeds, 80% power",
              **{name: "±" + fmt_value(deltas.detectable[i], cols.metric_of(i))
                 if not math.isnan(deltas.detectable[i]) else "-" for i, name in enumerate(names) if weights[i]}}
    unit = " in percentage points" if cols.suite_metric in PERCENT else ""
    effect = detectable_effect(seeds, deltas.family) if seeds > 1 and deltas.family else math.nan
    out = [f"Each row minus `{against}` at the same budget{unit}, seed by seed on the same test examples: the mean "
           f"difference and its 95% t interval over the shared seeds. **Family**: the {deltas.family} differences "
           f"of this table, Holm-corrected (family-wise error {ALPHA:.0%}); *better*/*worse* where the corrected "
           f"test rejects \"no difference\". Where it does not, the cell names the smallest difference the test "
           f"detects with 80% power at the family's strictest level (Holm's first step, {ALPHA:.0%}/"
           f"{deltas.family})" + (f", {effect:.3g} standard deviations of the seed-level differences at "
                                  f"{seeds} seeds" if not math.isnan(effect) else "")
           + ", from the cell's own seed-level spread and never below one test example's worth; the last row "
             "gives it per column, from the median spread of the column's cells.", ""]
    out += tables.markdown(pd.DataFrame([*table, detect]).fillna("-")).splitlines() + [""]
    return out, deltas


def _aggregates(rows: list[dict], cols: Columns, stats: Intervals, against: str, figures_dir: Path | None,
                suite: str, backbone: str) -> list[str]:
    """The suite's aggregates over tasks and seeds (rliable), and a performance-profile figure."""
    if len(cols.tasks) < 2 or cols.suite_metric is None or cols.suite_higher is None:
        return []
    keys = _complete(rows, cols)
    references = {key: (against, key[1]) for key in keys if (against, key[1]) in keys}
    found = aggregates.aggregates(stats, keys, cols.tasks, cols.suite_higher, references)
    if not found:
        return []
    metric = cols.suite_metric
    table = [{"method": key[0], "budget": key[1], "runs": f"{agg.runs} × {len(cols.tasks)}",
              "mean": _bracketed(agg.mean, metric), "IQM": _bracketed(agg.iqm, metric),
              f"P(better than {against})": aggregates.fmt_share(agg.improvement) if agg.improvement else
              ("reference" if key[0] == against else "-")} for key, agg in found.items()]
    out = [f"### {suite} on {backbone}: aggregates over tasks", "",
           f"Over every seed of every task ({aggregates.RESAMPLES:,} stratified bootstrap resamples: each task's "
           f"seeds resampled within the task; rliable's estimators): the mean, the interquartile mean (IQM, the "
           f"mean of the middle 50% of runs) and the probability of improvement, P(a run of the row beats a run "
           f"of `{against}` on the same task), averaged over tasks; 95% percentile intervals. With 3 seeds per "
           f"task these intervals are narrower than the seed-level t intervals above: read them as the field's "
           f"convention, and the paired table above for verdicts.", ""]
    out += tables.markdown(pd.DataFrame(table)).splitlines() + [""]
    if figures_dir is not None:
        taus, shares = aggregates.profile(stats, list(found), cols.tasks, cols.suite_higher)
        labels = {key: curves.label(key, len({k[1] for k in found}), False) for key in found}
        name = f"{slug(suite)}-{slug(backbone)}-profiles.png"
        figures.profiles(taus, {labels[k]: (k[0], v) for k, v in shares.items()}, curves.axis(cols, "threshold on"),
                         f"{suite} on {backbone}: performance profiles over {len(cols.tasks)} tasks and every seed",
                         figures_dir / name)
        out += [f"![{suite} on {backbone}: performance profiles]({figures_dir.name}/{name})", ""]
    return out


def _bracketed(interval, metric: str | None) -> str:
    text = fmt_value(interval.estimate, metric)
    if interval.known:
        text += f" [{fmt_value(interval.low, metric)}, {fmt_value(interval.high, metric)}]"
    return text


def _section(suite: str, backbone: str, rows: list[dict], reported: list[Reported], figures_dir: Path | None,
             against: str, every_run: list[dict]) -> list[str]:
    full = [r for r in rows if fraction_of(r) == 1.0]
    largest = max(fraction_of(r) for r in rows)
    main = full or [r for r in rows if fraction_of(r) == largest]
    cols = Columns(main)
    stats = intervals(main)
    out = [f"## {suite} on {backbone}", "", *provenance.header(rows, backbone, cols.suite_higher),
           *provenance.commands(every_run), ""]
    if not full:
        out += [f"No run on the full training split: the table shows the largest fraction, "
                f"{fmt_fraction(largest)}.", ""]
    lines, notes = _table(main, reported, cols, stats)
    out += lines + [""]
    out += _legend(notes, cols, bool(untrained(frame(main))))
    out += [f"### {suite} on {backbone}: paired differences from {against}", ""]
    out += _deltas(main, cols, stats, against)[0]
    out += _aggregates(main, cols, stats, against, figures_dir, suite, backbone)
    out += [f"### {suite} on {backbone}: hyper-parameters", "",
            "The hyper-parameters of the final runs and what selected them (tasks that share every value share a "
            "row; commit, versions and machine where they differ within the section):", ""]
    out += provenance.hparams_table(main, cols) + [""]
    out += tuning_section.render(suite, backbone, every_run, rows, figures_dir)
    if figures_dir is not None:
        name = f"{slug(suite)}-{slug(backbone)}-pareto.png"
        budgets = ", ".join(curves.budgets(rows))
        if curves.pareto(main, cols, stats, f"{suite} on {backbone}, budget {budgets}: test {cols.suite_metric} "
                                            f"against trainable parameters", figures_dir / name,
                         "95% t interval over seeds"):
            out += [f"![{suite} on {backbone}: test {cols.suite_metric} against trainable parameters]"
                    f"({figures_dir.name}/{name})", ""]
    if len(curves.budgets(rows)) > 1 and curves.curve_tasks(main, cols) != cols.tasks:
        out += [f"### {suite} on {backbone}: budgets", "",
                f"Every method at every budget, on the tasks every budget ran; mean over seeds ± half its 95% t "
                f"interval, and Δ against `{against}` at the same budget, paired and tested as above.", ""]
        out += curves.budget_table(main, cols, stats, against) + [""]
    if len({fraction_of(r) for r in rows}) > 1:
        out += curves.fraction_section(suite, backbone, rows, {fraction_of(main[0]): stats}, figures_dir)
    return out


def render(store: Store, out_path: str | Path | None = None, *, against: str = AGAINST,
           notes: str | None = None) -> str:
    """The leaderboard's markdown; with ``out_path`` (where the markdown goes) its figures are
    written to ``figures/`` beside it and embedded with relative links. ``against`` names the
    method every row is compared with, paired; ``notes`` (markdown, its claims already filled in
    by ``peftbench.notes``) goes under the title as written."""
    records = most_tuned([r for r in store.records(status="ok") if r["phase"] == "final"])
    out = ["# peftbench leaderboard", ""] + ([notes.strip(), ""] if notes else [])
    if not records:
        return "\n".join(out + ["No finished runs in the store yet: run `peftbench run` first.", ""])
    out += ["Final runs only: each method tuned with the same number of trials, retrained with each seed and "
            "tested once. Each score is the mean over seeds ± half the width of its 95% Student-t interval over "
            "seeds (the seed is the unit of replication); every verdict comes from a paired test over seeds, "
            "corrected for the family of comparisons its table makes (docs/protocol.md, \"The statistics\"). "
            "Trainable parameters exclude the classifier head, which every method trains; throughput in samples "
            "per second; peak memory of training.", "",
            f"Generated by peftbench at commit {provenance.generating_commit()} (the last commit that changed its "
            f"code).", ""]
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
                        against, every_run[(suite, backbone)])
    failed = store.records(status="failed")
    if failed:
        out += ["## Failed runs", ""]
        out += tables.markdown(pd.DataFrame(
            [{k: r[k] for k in ("suite", "task", "method", "phase", "seed", "error")} for r in failed],
            columns=["suite", "task", "method", "phase", "seed", "error"])).splitlines()
        out += [""]
    return "\n".join(out)
