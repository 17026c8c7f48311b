"""A suite's aggregates over tasks and seeds (rliable's estimators, ``peftbench.aggregates``) and
its performance-profile figure."""

from __future__ import annotations

from pathlib import Path

from .. import aggregates as rliable_aggregates
from .. import curves, figures
from ..formats import fmt_value, slug
from ..judging import Columns, Key
from ..stats import Interval, Intervals
from .model import Block, Cell, Figure, Heading, Row, Table, Text


def _bracketed(interval: Interval, metric: str | None) -> Cell:
    text = fmt_value(interval.estimate, metric)
    if interval.known:
        text += f" [{fmt_value(interval.low, metric)}, {fmt_value(interval.high, metric)}]"
    return Cell.of(interval, text)


def aggregates(keys: list[Key], cols: Columns, stats: Intervals, against: str, figures_dir: Path | None,
               suite: str, backbone: str) -> list[Block]:
    """The rows ``keys`` (those that ran every task) aggregated over the suite's tasks."""
    if len(cols.tasks) < 2 or cols.suite_metric is None or cols.suite_higher is None:
        return []
    references = {key: (against, key[1]) for key in keys if (against, key[1]) in keys}
    found = rliable_aggregates.aggregates(stats, keys, cols.tasks, cols.suite_higher, references)
    if not found:
        return []
    metric = cols.suite_metric
    rows = []
    for key, agg in found.items():
        improvement = (Cell.of(agg.improvement, rliable_aggregates.fmt_share(agg.improvement)) if agg.improvement
                       else Cell("reference" if key[0] == against else "-"))
        rows.append(Row((Cell(key[0]), Cell(key[1]), Cell(f"{agg.runs} × {len(cols.tasks)}"),
                         _bracketed(agg.mean, metric), _bracketed(agg.iqm, metric), improvement), *key))
    where = f"{suite} on {backbone}"
    out: list[Block] = [
        Heading(3, f"{where}: aggregates over tasks"),
        Text.of(f"Over every seed of every task ({rliable_aggregates.RESAMPLES:,} stratified bootstrap resamples: each "
                f"task's seeds resampled within the task; rliable's estimators): the mean, the interquartile mean "
                f"(IQM, the mean of the middle 50% of runs) and the probability of improvement, P(a run of the row "
                f"beats a run of `{against}` on the same task), averaged over tasks; 95% percentile intervals. With 3 "
                f"seeds per task these intervals are narrower than the seed-level t intervals above: read them as the "
                f"field's convention, and the paired table above for verdicts."),
        Table(("method", "budget", "runs", "mean", "IQM", f"P(better than {against})"), tuple(rows), "aggregates")]
    if figures_dir is not None:
        taus, shares = rliable_aggregates.profile(stats, list(found), cols.tasks, cols.suite_higher)
        labels = {key: curves.label(key, len({k[1] for k in found}), False) for key in found}
        name = f"{slug(suite)}-{slug(backbone)}-profiles.png"
        figures.profiles(taus, {labels[k]: (k[0], v) for k, v in shares.items()}, curves.axis(cols, "threshold on"),
                         f"{where}: performance profiles over {len(cols.tasks)} tasks and every seed",
                         figures_dir / name)
        out.append(Figure(f"{figures_dir.name}/{name}", f"{where}: performance profiles"))
    return out
