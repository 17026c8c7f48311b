"""The leaderboard model from the results store: per suite and backbone a table of the final runs
(each cell a mean over seeds with its 95% interval, bold for the rows no other row beats after
correction, rows at chance said so, reported numbers below a rule), each row's paired differences
from a reference method with corrected verdicts and the effects the tests could detect, the
suite's aggregates (``peftbench.board.aggregates``), the hyper-parameters and provenance of the
final runs, how the tuning went, a Pareto figure and scatter, and the budget and sample-efficiency
curves where runs trained at several budgets or fractions.

Judgements live in ``peftbench.judging`` (statistics in ``peftbench.stats``), the header and
provenance in ``peftbench.provenance``, the curves in ``peftbench.curves``, the tuning report in
``peftbench.tuning_section``."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pandas as pd

from .. import curves, provenance, tuning_section
from ..formats import PERCENT, fmt_count, fmt_fraction, fmt_rate, fmt_value, slug
from ..judging import (Columns, Deltas, Judged, Key, complete, fraction_of, frame, intervals, most_tuned,
                       untrained)
from ..reference import Reported, published
from ..stats import ALPHA, Intervals, detectable_effect
from ..store import Store
from .aggregate_section import aggregates
from .legend import legend
from .model import Block, Board, Cell, Figure, Heading, Row, Section, Table, Text

#: the method every row is compared with, paired, unless build(against=...) names another
AGAINST = "lora"
#: the resource columns of the scores table: name, frame column, whether higher is better
RESOURCES = (("trainable (% of budget)", "trainable", False), ("train/s", "train", True),
             ("eval/s", "evals", True), ("peak MB", "peak", False))


def _bold_best(cells: list[list[Cell]]) -> list[list[Cell]]:
    """Bold, per resource column, every cell whose shown value equals the best one (ties as
    displayed); a column where every row shows the same value has no best."""
    out = [list(row) for row in cells]
    for col, (_, _, higher) in enumerate(RESOURCES):
        column = [(row, c[col]) for row, c in enumerate(cells) if c[col].value is not None]
        if len({c.text for _, c in column}) < 2:
            continue
        best = (max if higher else min)(c.value for _, c in column)
        best_text = next(c.text for _, c in column if c.value == best)
        for row, c in column:
            if c.text == best_text:
                out[row][col] = Cell(f"**{c.text}**", c.value, verdict="best")
    return out


def _share(res: pd.Series) -> str:
    """The share of the budget a method reached; fixed-size methods (and stores from before budgets
    were recorded in parameters) show their share of the backbone instead."""
    budget = res["budget_params"]
    if res["fixed"] or budget is None or math.isnan(budget) or not budget:
        return f"{res['trainable'] / res['total'] * 100:.3g}% of backbone"
    return f"{res['trainable'] / budget * 100:.1f}%"


def _scores(rows: list[dict], reported: list[Reported], cols: Columns,
            stats: Intervals) -> tuple[Table, dict[str, bool]]:
    """The scores table, and which legend notes it needs (best, chance, short)."""
    keys: list[Key] = sorted(frame(rows).groupby(["method", "budget"]).groups)
    df = frame(rows)
    without = untrained(df)
    judged = [Judged(stats, keys, w, cols.direction(i), cols.chance(i), without, cols.resolution(i, stats))
              for i, w in enumerate(cols.weights())]
    resources = df.groupby(["method", "budget"]).agg(
        trainable=("trainable", "mean"), total=("total", "mean"), budget_params=("budget_params", "mean"),
        train=("train_rate", "mean"), evals=("eval_rate", "mean"), peak=("peak", "max"),
        fixed=("fixed", "all"), short=("short", "any"), seeds=("seed", "nunique"))
    measured = []
    for key in keys:
        res = resources.loc[key]
        train = res["train"] or None
        measured.append([Cell(f"{fmt_count(res['trainable'])} ({_share(res)})", res["trainable"]),
                         Cell(fmt_rate(train), train) if train else Cell("-"),
                         Cell(fmt_rate(res["evals"]), res["evals"]), Cell(f"{res['peak']:.0f}", res["peak"])])
    by_key = defaultdict(list)
    for r in rows:
        by_key[(r["method"], r["budget"])].append(r)
    table = []
    for key, resource_cells in zip(keys, _bold_best(measured)):
        res = resources.loc[key]
        cells = (Cell(key[0] + (" †" if res["short"] else "")), Cell("-" if res["fixed"] else key[1]),
                 *(j.cell(key, cols.metric_of(i)) for i, j in enumerate(judged)), *resource_cells,
                 Cell(str(res["seeds"]), float(res["seeds"])))
        table.append(Row(cells, *key, details=provenance.row_details(by_key[key])))
    columns = ("method", "budget", *cols.names(), *(name for name, _, _ in RESOURCES), "seeds")
    table += _reported_rows(cols, reported, columns, rows[0]["backbone"])
    notes = {"best": any(j.best for j in judged), "chance": any(any(j.at_chance.values()) for j in judged),
             "short": bool(resources["short"].any())}
    tasks = (None, None, *(cols.tasks[i] if i < len(cols.tasks) else "" for i in range(len(cols.names()))),
             *(None,) * (len(RESOURCES) + 1))
    return Table(columns, tuple(table), "scores", tasks), notes


def _reported_rows(cols: Columns, reported: list[Reported], columns: tuple[str, ...], backbone: str) -> list[Row]:
    """Numbers from papers, below a rule row, labelled with their source and never ranked (bold)."""
    rows: dict[tuple, dict[str, Reported]] = defaultdict(dict)
    for item in reported:
        if item.task in cols.tasks:
            rows[(item.method, item.reported_as, item.reported_backbone, item.source)][item.task] = item
    if not rows:
        return []
    out = [Row((Cell("*reported in papers: not measured here, never ranked*"), *(Cell(""),) * (len(columns) - 1)),
               reported=True)]
    for (_, reported_as, model, source), items in sorted(rows.items()):
        on = "" if any(i.backbone == backbone for i in items.values()) else f"; on {model}"
        values = cols.point({t: item.value for t, item in items.items()})
        row = dict.fromkeys(columns, Cell("-"))
        row.update({"method": Cell(f"{reported_as} — reported ({source}{on})"),
                    "trainable (% of budget)": Cell(str(next(iter(items.values())).params or "-"))})
        row.update({name: Cell(fmt_value(v, cols.metric_of(i)), v) if v is not None else Cell("-")
                    for i, (name, v) in enumerate(zip(cols.names(), values))})
        out.append(Row(tuple(row.values()), reported=True))
    return out


def _deltas(rows: list[dict], cols: Columns, stats: Intervals, against: str) -> list[Block]:
    """Each row's paired difference from ``against`` at its budget in every column, one family of
    tests, with the minimum detectable effect of each column."""
    keys = complete(rows, cols)
    if not any(m == against for m, _ in keys):
        return [Text.of(f"No `{against}` rows here: no paired differences.")]
    weights = cols.weights()
    deltas = Deltas(stats, keys, against, [(w, cols.direction(i), cols.resolution(i, stats))
                                           for i, w in enumerate(weights)])
    shown = [i for i in range(len(cols.names())) if weights[i]]
    table = [Row((Cell(key[0]), Cell(key[1]), *(deltas.cell(key, i, cols.metric_of(i)) for i in shown)), *key)
             for key in keys if key[0] != against and any((key, i) in deltas.diffs for i in range(len(weights)))]
    if not table:
        return [Text.of(f"No row shares a seed with `{against}` at its budget: no paired differences.")]
    seeds = max(d.n for d in deltas.diffs.values())
    table.append(Row((Cell("*minimum detectable effect*"), Cell(f"{seeds} seeds, 80% power"),
                      *(Cell("±" + fmt_value(deltas.detectable[i], cols.metric_of(i)), deltas.detectable[i])
                        if not math.isnan(deltas.detectable[i]) else Cell("-") for i in shown))))
    unit = " in percentage points" if cols.suite_metric in PERCENT else ""
    effect = detectable_effect(seeds, deltas.family) if seeds > 1 and deltas.family else math.nan
    text = (f"Each row minus `{against}` at the same budget{unit}, seed by seed on the same test examples: the mean "
            f"difference and its 95% t interval over the shared seeds. **Family**: the {deltas.family} differences "
            f"of this table, Holm-corrected (family-wise error {ALPHA:.0%}); *better*/*worse* where the corrected "
            f"test rejects \"no difference\". Where it does not, the cell names the smallest difference the test "
            f"detects with 80% power at the family's strictest level (Holm's first step, {ALPHA:.0%}/"
            f"{deltas.family})" + (f", {effect:.3g} standard deviations of the seed-level differences at "
                                   f"{seeds} seeds" if not math.isnan(effect) else "")
            + ", from the cell's own seed-level spread and never below one test example's worth; the last row "
              "gives it per column, from the median spread of the column's cells.")
    names = cols.names()
    tasks = (None, None, *(cols.tasks[i] if i < len(cols.tasks) else "" for i in shown))
    return [Text.of(text), Table(("method", "budget", *(names[i] for i in shown)), tuple(table), "deltas", tasks)]


def _section(suite: str, backbone: str, rows: list[dict], reported: list[Reported], figures_dir: Path | None,
             against: str, every_run: list[dict]) -> Section:
    full = [r for r in rows if fraction_of(r) == 1.0]
    largest = max(fraction_of(r) for r in rows)
    main = full or [r for r in rows if fraction_of(r) == largest]
    cols = Columns(main)
    stats = intervals(main)
    where = f"{suite} on {backbone}"
    section = Section(where, [Text((*provenance.header(rows, backbone, cols.suite_higher),
                                    *provenance.commands(every_run)))])
    if not full:
        section.add(Text.of(f"No run on the full training split: the table shows the largest fraction, "
                            f"{fmt_fraction(largest)}."))
    scores, notes = _scores(main, reported, cols, stats)
    section.add(scores, *legend(notes, cols, bool(untrained(frame(main)))),
                Heading(3, f"{where}: paired differences from {against}"), *_deltas(main, cols, stats, against))
    section.add(*aggregates(complete(main, cols), cols, stats, against, figures_dir, suite, backbone))
    section.add(Heading(3, f"{where}: hyper-parameters"),
                Text.of("The hyper-parameters of the final runs and what selected them (tasks that share every value "
                        "share a row; commit, versions and machine where they differ within the section):"),
                provenance.hparams_table(main, cols))
    section.add(*tuning_section.render(suite, backbone, every_run, rows, figures_dir))
    budgets = ", ".join(curves.budgets(rows))
    title = f"{where}, budget {budgets}: test {cols.suite_metric} against trainable parameters"
    if figures_dir is not None:
        name = f"{slug(suite)}-{slug(backbone)}-pareto.png"
        if curves.pareto(main, cols, stats, title, figures_dir / name, "95% t interval over seeds"):
            section.add(Figure(f"{figures_dir.name}/{name}",
                               f"{where}: test {cols.suite_metric} against trainable parameters"))
    scatter = curves.scatter(main, cols, stats, f"{where}, budget {budgets}")
    if scatter is not None:
        section.add(scatter)
    if len(curves.budgets(rows)) > 1 and curves.curve_tasks(main, cols) != cols.tasks:
        section.add(Heading(3, f"{where}: budgets"),
                    Text.of(f"Every method at every budget, on the tasks every budget ran; mean over seeds ± half its "
                            f"95% t interval, and Δ against `{against}` at the same budget, paired and tested as "
                            f"above."), *curves.budget_table(main, cols, stats, against))
    if len({fraction_of(r) for r in rows}) > 1:
        section.add(*curves.fraction_section(suite, backbone, rows, {fraction_of(main[0]): stats}, figures_dir))
    return section


INTRO = ("Final runs only: each method tuned with the same number of trials, retrained with each seed and tested once. "
         "Each score is the mean over seeds ± half the width of its 95% Student-t interval over seeds (the seed is "
         "the unit of replication); every verdict comes from a paired test over seeds, corrected for the family of "
         "comparisons its table makes (docs/protocol.md, \"The statistics\"). Trainable parameters exclude the "
         "classifier head, which every method trains; throughput in samples per second; peak memory of training.")


def build(store: Store, out_path: str | Path | None = None, *, against: str = AGAINST,
          notes: str | None = None) -> Board:
    """The leaderboard of ``store``; with ``out_path`` (where the markdown goes) its figures are
    written to ``figures/`` beside it. ``against`` names the method every row is compared with,
    paired; ``notes`` (markdown, its claims already filled in by ``peftbench.notes``) goes under
    the title as written."""
    records = most_tuned([r for r in store.records(status="ok") if r["phase"] == "final"])
    board = Board([Heading(1, "peftbench leaderboard"), *([Text.of(notes.strip())] if notes else [])])
    if not records:
        board.preamble.append(Text.of("No finished runs in the store yet: run `peftbench run` first."))
        return board
    board.preamble += [Text.of(INTRO), Text.of(f"Generated by peftbench at commit {provenance.generating_commit()} "
                                               f"(the last commit that changed its code).")]
    figures_dir = Path(out_path).parent / "figures" if out_path is not None else None
    reported = published()
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["suite"], r["backbone"])].append(r)
    every_run: dict[tuple, list[dict]] = defaultdict(list)
    for r in store.records():
        every_run[(r["suite"], r["backbone"])].append(r)
    for (suite, backbone), rows in sorted(groups.items()):
        board.sections.append(_section(suite, backbone, rows, [p for p in reported if p.suite == suite],
                                       figures_dir, against, every_run[(suite, backbone)]))
    failed = store.records(status="failed")
    if failed:
        fields = ["suite", "task", "method", "phase", "seed", "error"]
        board.sections.append(Section("Failed runs", [Table.of_frame(pd.DataFrame(
            [{k: r[k] for k in fields} for r in failed], columns=fields), "failed")]))
    return board
