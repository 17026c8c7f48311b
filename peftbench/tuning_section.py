"""The leaderboard's tuning subsection: per method, how its studies went (completed trials, how
often the defaults won, selection margins against the noise, how stable the choice is), and a
convergence figure. The numbers come from ``peftbench.tuning_report``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import figures, tuning_report
from .board.model import Block, Figure, Heading, Table, Text
from .formats import slug


def _studies(every_run: list[dict], finals: list[dict]) -> list[dict]:
    """The studies whose winners the shown final runs used."""
    used = {((r["details"] or {}).get("selected") or {}).get("study") for r in finals}
    trials = [r for r in every_run if r["phase"] == "tune" and (r["details"] or {}).get("study") in used
              and "slot" in r["details"]]
    return tuning_report.studies(trials + finals) if trials else []


def converged(summaries: list[dict]) -> list[float]:
    """Per slot, the share of studies whose best val so far is already their final winner's."""
    curves = [s["best_so_far"] for s in summaries if s["best_so_far"] and s["best_so_far"][-1] is not None]
    if not curves:
        return []
    slots = max(len(c) for c in curves)
    return [sum(len(c) > i and c[i] == c[-1] for c in curves) / len(curves) for i in range(slots)]


def render(suite: str, backbone: str, every_run: list[dict], finals: list[dict], figures_dir: Path | None
           ) -> list[Block]:
    summaries = _studies(every_run, finals)
    if not summaries:
        return []
    table = []
    for method, s in tuning_report.method_summary(summaries).items():
        stability = s["median_stability"]
        table.append({
            "method": method, "studies": s["studies"], "defaults won": s["defaults_won"],
            "completed trials (median)": f"{s['median_completed']:g}",
            "margin below noise": f"{s['margin_below_noise']} of {s['margin_judged']}",
            "same choice (median)": f"{stability:.0%}" if stability is not None else "-",
        })
    total = tuning_report.overall(summaries)
    out: list[Block] = [
        Heading(3, f"{suite} on {backbone}: tuning"),
        Text.of("Per method, its studies (one per task, budget and fraction): how many trials completed (the rest "
                "were pruned or failed), in how many the defaults (the first trial) won, in how many the winner's val "
                "margin over the runner-up was below the seed noise of a val score (the spread over the winner's tune "
                "seeds, or else over the final runs' seeds), and the median share of bootstrap redraws of the trials, "
                "each val redrawn within its noise, that select the same trial again. Over all "
                f"{total['studies']} studies the defaults won {total['defaults_won']}."),
        Table.of_frame(pd.DataFrame(table).astype(str), "tuning")]
    if figures_dir is not None:
        lines = []
        for method in sorted({s["method"] for s in summaries}):
            share = converged([s for s in summaries if s["method"] == method])
            lines.append(figures.Line(method, method, [figures.Point(i + 1, v) for i, v in enumerate(share)]))
        name = f"{slug(suite)}-{slug(backbone)}-tuning.png"
        figures.convergence(lines, f"{suite} on {backbone}: share of studies whose winner is already found, "
                                   f"by trial", figures_dir / name)
        out.append(Figure(f"{figures_dir.name}/{name}", f"{suite} on {backbone}: tuning convergence"))
    return out
