"""The leaderboard model as one self-contained HTML page: tables sortable by every column, each
suite filterable by method, budget and task, an interactive Pareto scatter, the figures inlined,
each row's hyper-parameters and provenance on demand. It works opened from disk and requests
nothing: the script, the style and the figures are in the file.

Everything that comes from a record is data, never markup: text is escaped here, markdown is
rendered with raw HTML disabled (markdown-it), and the scatter's data travels as JSON that the
page's script reads and writes with ``textContent``."""

from __future__ import annotations

import base64
import json
import math
from html import escape
from importlib import resources
from pathlib import Path

from markdown_it import MarkdownIt

from .. import figures
from ..store import Store
from .build import build
from .model import Block, Board, Cell, Figure, Heading, Row, Scatter, Section, Table, Text

#: CommonMark with tables, raw HTML off: a record's ``<img onerror=...>`` stays text
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _attrs(**values) -> str:
    """HTML attributes, escaped; None leaves one out (``data_x`` becomes ``data-x``)."""
    return "".join(f' {k.replace("_", "-")}="{escape(str(v), quote=True)}"' for k, v in values.items()
                   if v is not None)


def _number(value: float | None) -> str | None:
    return None if value is None or not math.isfinite(value) else repr(float(value))


#: opens a row's hyper-parameters and provenance (the row after it)
_DETAILS = (' <button class="provenance" type="button" aria-expanded="false" title="hyper-parameters and provenance">'
            "details</button>")


def _cell(cell: Cell, extra: str = "") -> str:
    numbers = _attrs(data_value=_number(cell.value), data_low=_number(cell.low), data_high=_number(cell.high),
                     data_verdict=cell.verdict)
    return f"<td{numbers}>{_MARKDOWN.renderInline(cell.text)}{extra}</td>"


def _row(row: Row, width: int) -> str:
    kind = "reported" if row.reported else "summary" if row.method is None else None
    cells = "".join(_cell(c, _DETAILS if i == 0 and row.details else "") for i, c in enumerate(row.cells))
    out = f"<tr{_attrs(data_method=row.method, data_budget=row.budget, **{'class': kind})}>{cells}</tr>"
    if row.details:
        items = "".join(f"<dt>{escape(label)}</dt><dd>{escape(text)}</dd>" for label, text in row.details)
        out += f'<tr class="details" hidden><td colspan="{width}"><dl>{items}</dl></td></tr>'
    return out


def _table(table: Table) -> str:
    tasks = table.tasks or (None,) * len(table.columns)
    head = "".join(f"<th{_attrs(data_task=task)}><button class=\"sort\" type=\"button\">{escape(name)}</button></th>"
                   for name, task in zip(table.columns, tasks))
    body = "".join(_row(row, len(table.columns)) for row in table.rows)
    return (f'<div class="scroll"><table class="board"{_attrs(data_role=table.role)}><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _figure(figure: Figure, root: Path | None) -> str:
    path = root / figure.path if root is not None else None
    if path is None or not path.is_file():
        return f"<p class=\"missing\">Figure not drawn: {escape(figure.alt)}</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}"{_attrs(alt=figure.alt)}>'
            f"<figcaption>{escape(figure.alt)}</figcaption></figure>")


def _json(value) -> str:
    """JSON safe inside a <script> element: no "</script>" or "<!--" can close or open anything."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")


def _scatter(scatter: Scatter) -> str:
    data = {"title": scatter.title, "y_label": scatter.y_label, "y_higher": scatter.y_higher, "scale": scatter.scale,
            "axes": scatter.axes, "points": [{"method": p.method, "budget": p.budget, "label": p.label, "y": p.y,
                                              "low": p.low, "high": p.high, "x": p.x, "color": figures.color(p.method)}
                                             for p in scatter.points]}
    options = "".join(f"<option>{escape(name)}</option>" for name in scatter.axes)
    return (f'<div class="scatter"><p class="scatter-title">{escape(scatter.title)}: '
            f'<label>x axis <select class="axis">{options}</select></label></p>'
            f'<svg class="plot" viewBox="0 0 720 420" role="img"{_attrs(aria_label=scatter.title)}></svg>'
            f'<script type="application/json" class="scatter-data">{_json(data)}</script></div>')


def _block(block: Block, root: Path | None) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{escape(block.text)}</h{block.level}>"
    if isinstance(block, Text):
        return _MARKDOWN.render("\n".join(block.lines))
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        return _figure(block, root)
    if isinstance(block, Scatter):
        return _scatter(block)
    raise TypeError(f"not a leaderboard block: {block!r}")


def _filters(section: Section) -> str:
    """Method checkboxes, a budget and a task choice, for a section with a scores table."""
    scores = section.tables("scores")
    if not scores:
        return ""
    methods = list(dict.fromkeys(r.method for r in scores[0].rows if r.method is not None))
    budgets = list(dict.fromkeys(r.budget for r in scores[0].rows if r.budget is not None))
    tasks = [t for t in scores[0].tasks if t]
    boxes = "".join(f'<label><input type="checkbox" class="method" checked{_attrs(value=m)}> {escape(m)}</label>'
                    for m in methods)

    def choice(name: str, values: list[str]) -> str:
        options = "".join(f"<option{_attrs(value=v)}>{escape(v)}</option>" for v in values)
        return f'<label>{name} <select class="{name}"><option value="">all</option>{options}</select></label>'

    return (f'<form class="filters"><fieldset><legend>methods</legend>{boxes}</fieldset>'
            f"{choice('budget', budgets)} {choice('task', tasks)}</form>")


def render(board: Board, root: Path | None = None) -> str:
    """The page; ``root`` is the folder the figures' paths start from (None: figures left out)."""
    parts = [_block(b, root) for b in board.preamble]
    toc = "".join(f'<li><a href="#s{i}">{escape(s.title)}</a></li>' for i, s in enumerate(board.sections))
    parts.append(f"<nav><ul>{toc}</ul></nav>" if board.sections else "")
    for i, section in enumerate(board.sections):
        blocks = "".join(_block(b, root) for b in section.blocks)
        parts.append(f'<section id="s{i}" class="suite"><h2>{escape(section.title)}</h2>{_filters(section)}'
                     f"{blocks}</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            "<link rel=\"icon\" href=\"data:,\"><title>peftbench leaderboard</title>"
            f"<style>{_asset('page.css')}</style></head><body><main>{''.join(parts)}</main>"
            f"<script>{_asset('page.js')}</script></body></html>\n")


def page(store: Store, out_path: str | Path, **options) -> str:
    """The store's leaderboard as HTML, its figures drawn beside ``out_path`` and inlined."""
    return render(build(store, out_path, **options), Path(out_path).parent)
