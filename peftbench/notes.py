"""The leaderboard's prose, with every number filled from the store: a notes file is markdown
whose numbers are claims, ``{{kind suite/column method ...: expectation}}``, each replaced by the
value the leaderboard computes and, where it states an expectation, checked against the verdict
the page shows. A claim whose expectation no longer holds stops generation with a one-line error
naming it, so prose and tables cannot drift apart.

Claims (``@budget`` picks a row's budget where a method ran several; ``at F`` a data fraction):

- ``{{score vtab-lite/mnist hora}}``: the row's mean (``: best`` / ``: not best``: whether it is
  bold, no other row better after correction; ``: chance``: marked at chance)
- ``{{interval vtab-lite/mean vera}}``: the mean ± half its 95% interval
- ``{{delta vtab-lite/mean vera vs lora}}``: the paired difference and its 95% interval
  (``: better`` / ``: worse`` / ``: no verdict``: the corrected verdict of the page's table)
- ``{{mde vtab-lite/mean}}``: the column's minimum detectable effect, as its table states it
- ``{{needed vtab-lite/mean 2}}``: how many seeds the column's paired tests would need to detect a
  difference of 2 (points, for accuracy) with 80% power, at its spread and family size
- ``{{ratio hmoe/shared lora vs hora at 0.0039}}``: the first row's mean over the second's
- ``{{seeds vtab-lite/mnist hora}}``: the row's score at each seed
- ``{{family vtab-lite}}``: how many differences the paired table tests (``vtab-lite/budgets``:
  the budgets table, whose rows a ``delta`` claim on a budget the main table lacks also reads)
- ``{{iqm vtab-lite vera}}``, ``{{improvement vtab-lite vera}}``: the suite's interquartile mean
  and P(better than the reference), with their intervals
- ``{{defaults vtab-lite}}``: in how many of the section's studies the defaults won ("27 of 77")
- ``{{machines vtab-lite}}``: how many device names the section's runs recorded
- ``{{examples vtab-lite/faces}}``: how many test examples the task's final runs scored
- ``{{setting vtab-lite trials}}``: a recipe setting of the section's final runs (every value it took)
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

from . import aggregates, curves, tuning_report
from .errors import UsageError
from .formats import PERCENT, fmt_delta, fmt_interval, fmt_value
from .stats import detectable
from .judging import Columns, Deltas, Judged, complete, fraction_of, frame, intervals, most_tuned, untrained
from .store import Store

CLAIM = re.compile(r"\{\{\s*(.+?)\s*\}\}")
SYNTAX = re.compile(r"^(?P<kind>[a-z]+)\s+(?P<suite>[^\s/]+)(?:/(?P<column>\S+))?"
                    r"(?:\s+(?P<method>[^\s@]+)(?:@(?P<budget>\S+))?)?"
                    r"(?:\s+vs\s+(?P<other>[^\s@]+)(?:@(?P<other_budget>\S+))?)?"
                    r"(?:\s+at\s+(?P<fraction>[0-9.e-]+))?"
                    r"(?:\s*:\s*(?P<expect>[a-z ]+))?$")


KINDS = ("score", "interval", "delta", "mde", "needed", "ratio", "seeds", "family", "defaults", "machines", "iqm",
         "improvement", "examples", "setting")
#: the most seeds ``needed`` looks at
MOST_SEEDS = 200


class ClaimError(UsageError):
    """A claim that cannot be read or no longer holds."""


@dataclass
class Section:
    """One suite's final runs, judged as the page judges them."""

    suite: str
    rows: list[dict]
    every_run: list[dict]
    against: str

    def at(self, fraction: float | None) -> list[dict]:
        if fraction is None:
            full = [r for r in self.rows if fraction_of(r) == 1.0]
            return full or [r for r in self.rows if fraction_of(r) == max(fraction_of(r) for r in self.rows)]
        found = [r for r in self.rows if math.isclose(fraction_of(r), fraction, rel_tol=1e-3)]
        if not found:
            raise KeyError(f"no final runs at fraction {fraction}")
        return found

    @cached_property
    def budgets(self) -> Deltas | None:
        """The budgets table's differences, where the section has one."""
        main = self.at(None)
        cols = Columns(main)
        if len(curves.budgets(self.rows)) < 2 or curves.curve_tasks(main, cols) == cols.tasks:
            return None
        found = curves.budget_deltas(main, cols, intervals(main), self.against)
        return found[1] if found else None

    @cached_property
    def aggregates(self) -> dict:
        main = self.at(None)
        cols = Columns(main)
        keys = complete(main, cols)
        references = {key: (self.against, key[1]) for key in keys if (self.against, key[1]) in keys}
        return aggregates.aggregates(intervals(main), keys, cols.tasks, cols.suite_higher, references)

    @cached_property
    def deltas(self) -> tuple[Columns, Deltas]:
        main = self.at(None)
        cols, stats = Columns(main), intervals(main)
        columns = [(w, cols.direction(i), cols.resolution(i, stats)) for i, w in enumerate(cols.weights())]
        return cols, Deltas(stats, complete(main, cols), self.against, columns)


def _column(cols: Columns, name: str | None) -> int:
    names = cols.names()
    if name is None or name == "mean":
        return cols.summary
    if name in names:
        return names.index(name)
    raise KeyError(f"no column {name!r} (columns: {', '.join(names)})")


def _key(rows: list[dict], method: str | None, budget: str | None, tasks=()) -> tuple[str, str]:
    """The row of ``method`` (at ``budget``, or the one budget at which it ran every one of ``tasks``)."""
    budgets = sorted({r["budget"] for r in rows if r["method"] == method})
    if not budgets:
        raise KeyError(f"no final runs of {method!r}")
    if budget is None and len(budgets) > 1:
        ran = [b for b in budgets
               if set(tasks) <= {r["task"] for r in rows if (r["method"], r["budget"]) == (method, b)}]
        budgets = ran if len(ran) == 1 else budgets
    if budget is None:
        if len(budgets) > 1:
            raise KeyError(f"{method} ran at several budgets ({', '.join(budgets)}): name one with @")
        budget = budgets[0]
    if budget not in budgets:
        raise KeyError(f"{method} did not run at budget {budget}")
    return method, budget


def _value(sections: dict[str, Section], claim: dict) -> tuple[str, str | None]:
    """The claim's text, and the verdict its expectation is checked against (None: nothing to check)."""
    kind, section = claim["kind"], sections.get(claim["suite"])
    if kind not in KINDS:
        raise KeyError(f"unknown kind of claim {kind!r} (kinds: {', '.join(KINDS)})")
    if section is None:
        raise KeyError(f"no suite {claim['suite']!r} in the store")
    if kind == "family":
        found = section.budgets if claim["column"] == "budgets" else section.deltas[1]
        if found is None:
            raise KeyError("no budgets table in this section")
        return str(found.family), None
    if kind == "setting":
        values = sorted({str(r["settings"].get(claim["method"])) for r in section.rows})
        return " / ".join(values), None
    if kind == "examples":
        found = intervals(section.at(None)).test_examples(claim["column"] or "")
        if found is None:
            raise KeyError(f"no per-example outcomes recorded for task {claim['column']!r}")
        return f"{found:,}", None
    if kind in ("iqm", "improvement"):
        rows = section.at(None)
        key = _key(rows, claim["method"], claim["budget"], {r["task"] for r in rows})
        found = section.aggregates.get(key)
        if found is None:
            raise KeyError(f"{key[0]} has no aggregate (it did not run every task)")
        if kind == "iqm":
            return fmt_value(found.iqm.estimate, rows[0]["metric"]) + _bracket(found.iqm, rows[0]["metric"]), None
        if found.improvement is None:
            raise KeyError(f"{key[0]} has no reference row to improve on")
        return aggregates.fmt_share(found.improvement), None
    if kind == "defaults":
        used = {((r["details"] or {}).get("selected") or {}).get("study") for r in section.rows}
        found = [s for s in tuning_report.studies(section.every_run) if s["study"] in used]
        return f"{sum(s['defaults_won'] for s in found)} of {len(found)}", None
    if kind == "machines":
        return str(len({(r["env"] or {}).get("device") for r in section.every_run})), None
    fraction = float(claim["fraction"]) if claim["fraction"] else None
    rows = section.at(fraction)
    cols, stats = Columns(rows), intervals(rows)
    index = _column(cols, claim["column"])
    metric, weights = cols.metric_of(index), cols.weights()[index]
    if kind == "mde":
        deltas = section.deltas[1]
        return "±" + fmt_value(deltas.detectable[index], metric), None
    if kind == "needed":
        target = float(claim["method"] or "nan") / (100 if metric in PERCENT else 1)  # points, for accuracy
        return _needed(section.deltas[1], index, target), None
    key = _key(rows, claim["method"], claim["budget"], weights or ())
    if kind in ("score", "interval", "seeds"):
        judged = Judged(stats, sorted(stats.rows), weights, cols.direction(index), cols.chance(index),
                        untrained(frame(rows)), cols.resolution(index, stats))
        if key not in judged.intervals:
            raise KeyError(f"{key[0]} has no score in column {cols.names()[index]}")
        verdict = "chance" if judged.at_chance[key] else "best" if key in judged.best else "not best"
        if kind == "seeds":
            seeds = stats.seeds(key, weights)
            return ", ".join(fmt_value(v, metric) for v in stats.scores(key, weights, seeds)), None
        interval = judged.intervals[key]
        return (fmt_value(interval.estimate, metric) if kind == "score" else fmt_interval(interval, metric)), verdict
    other = _key(rows, claim["other"], claim["other_budget"] or (key[1] if kind == "delta" else None), weights or ())
    if kind == "ratio":
        a, b = stats.interval(key, weights), stats.interval(other, weights)
        return f"{a.estimate / b.estimate:.2g}", None
    if kind == "delta":
        if fraction is not None or other[0] != section.against:
            diff = stats.paired(key, other, weights, cols.resolution(index, stats))
            return fmt_delta(diff, metric), None
        cols, deltas = section.deltas
        if (key, index) not in deltas.diffs and section.budgets is not None and (key, 0) in section.budgets.diffs:
            deltas, index = section.budgets, 0  # a budget-curve row: the budgets table's family
        if (key, index) not in deltas.diffs:
            raise KeyError(f"{key[0]} shares no seed with {other[0]} in column {cols.names()[index]}")
        return fmt_delta(deltas.diffs[(key, index)], metric), deltas.verdict(key, index) or "no verdict"
    raise AssertionError(kind)


def _bracket(interval, metric: str) -> str:
    return f" [{fmt_value(interval.low, metric)}, {fmt_value(interval.high, metric)}]" if interval.known else ""


def _needed(deltas: Deltas, column: int, target: float) -> str:
    """The fewest seeds whose paired tests detect ``target`` at the column's median seed-level
    spread and the table's family size."""
    spreads = [d.sd for (_, c), d in deltas.diffs.items() if c == column and d.n > 1]
    if not spreads or not target > 0:
        raise KeyError("no spread to size from, or no positive difference to detect")
    spread = statistics.median(spreads)
    for seeds in range(2, MOST_SEEDS + 1):
        if detectable(spread, seeds, deltas.family) <= target:
            return str(seeds)
    return f"more than {MOST_SEEDS}"


def fill(template: str, store: Store, against: str) -> str:
    """The notes with every claim replaced by its value; ClaimError names the first claim that
    cannot be read or whose expectation fails."""
    records = most_tuned([r for r in store.records(status="ok") if r["phase"] == "final"])
    by_suite: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_suite[r["suite"]].append(r)
    every_run: dict[str, list[dict]] = defaultdict(list)
    for r in store.records():
        every_run[r["suite"]].append(r)
    sections = {suite: Section(suite, rows, every_run[suite], against) for suite, rows in by_suite.items()}

    def replace(match: re.Match) -> str:
        text = match.group(1)
        claim = SYNTAX.match(text)
        if claim is None:
            raise ClaimError(f"claim {{{{{text}}}}} is not of the form "
                             f"'kind suite/column method[@budget] [vs method] [at fraction] [: expectation]'")
        try:
            value, verdict = _value(sections, claim.groupdict())
        except KeyError as exc:
            raise ClaimError(f"claim {{{{{text}}}}}: {exc.args[0]}") from None
        expect = (claim["expect"] or "").strip()
        if expect and expect != verdict:
            raise ClaimError(f"claim {{{{{text}}}}} no longer holds: the leaderboard says "
                             f"{verdict or 'nothing to check'} ({value})")
        return value

    return CLAIM.sub(replace, template)

