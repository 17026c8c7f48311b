"""The published numbers agree everywhere: for the committed store, every estimate and interval of
the leaderboard model is what the markdown shows, what the HTML page carries, and what the exported
runs give when averaged again."""

import json
import math
import re
import statistics
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import pytest

from peftbench.board import html, markdown
from peftbench.board.build import build
from peftbench.board.model import Table
from peftbench.export import jsonl_text
from peftbench.formats import fmt_value
from peftbench.judging import fraction_of, most_tuned
from peftbench.store import Store

COMMITTED = Path(__file__).resolve().parents[1] / "leaderboard" / "results.db"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def published():
    if not COMMITTED.exists():
        pytest.skip(f"no committed store at {COMMITTED}")
    store = Store(str(COMMITTED), create=False)
    return store, build(store)


def _tables(board) -> list[Table]:
    return [b for part in [board.preamble, *(s.blocks for s in board.sections)] for b in part if isinstance(b, Table)]


def _markdown_tables(text: str) -> list[list[list[str]]]:
    found = re.findall(r"(?:^\|.*\n?)+", text, flags=re.M)
    return [[[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
             for i, line in enumerate(block.splitlines()) if i != 1] for block in found]


class _Cells(HTMLParser):
    """Every table cell of the page: its data-* numbers."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[dict]]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and ("class", "details") not in attrs and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables and self.tables[-1]:
            self.tables[-1][-1].append(dict(attrs))


def test_markdown_shows_the_models_cells_and_its_numbers(published):
    _, board = published
    tables = _tables(board)
    shown = _markdown_tables(markdown.render(board))
    assert len(shown) == len(tables)
    checked = 0
    for table, rows in zip(tables, shown):
        assert rows[0] == list(table.columns)
        assert rows[1:] == [[c.text for c in row.cells] for row in table.rows]
        if table.role != "scores":
            continue
        for row in table.rows:
            for name, cell in zip(table.columns, row.cells):
                if cell.low is None or "(%" in name:
                    continue
                mean, half = cell.text.replace("**", "").split(" (")[0].split(" ± ")
                assert mean == fmt_value(cell.value, "accuracy") or mean == fmt_value(cell.value, "mse")
                assert half in (fmt_value((cell.high - cell.low) / 2, "accuracy"),
                                fmt_value((cell.high - cell.low) / 2, "mse"))
                checked += 1
    assert checked > 50  # 99 in the store committed with this test


def test_the_html_page_carries_the_models_numbers(published):
    _, board = published
    parser = _Cells()
    parser.feed(html.render(board))
    tables = _tables(board)
    assert len(parser.tables) == len(tables)
    for table, rows in zip(tables, parser.tables):
        body = rows[1:]
        assert len(body) == len(table.rows)
        for row, cells in zip(table.rows, body):
            for cell, attrs in zip(row.cells, cells):
                for field in ("value", "low", "high"):
                    number = getattr(cell, field)
                    given = attrs.get(f"data-{field}")
                    if number is None or not math.isfinite(number):
                        assert given is None
                    else:
                        assert float(given) == number


def test_the_exported_runs_average_to_the_models_scores(published):
    store, board = published
    runs = [json.loads(line) for line in jsonl_text(store.records(phase="final")).splitlines()]
    finals = most_tuned([r for r in runs if r["status"] == "ok"])
    scores = defaultdict(list)
    largest = defaultdict(float)
    for r in finals:
        largest[(r["suite"], r["backbone"])] = max(largest[(r["suite"], r["backbone"])], fraction_of(r))
    for r in finals:
        if fraction_of(r) == largest[(r["suite"], r["backbone"])]:
            scores[(f"{r['suite']} on {r['backbone']}", r["method"], r["budget"], r["task"])].append(r["test_metric"])
    checked = 0
    for section in board.sections:
        for table in section.tables("scores"):
            for row in table.rows:
                for task, cell in zip(table.tasks, row.cells):
                    if task and row.method is not None and cell.value is not None:
                        runs_of_cell = scores[(section.title, row.method, row.budget, task)]
                        assert cell.value == pytest.approx(statistics.fmean(runs_of_cell), abs=1e-12)
                        checked += 1
    assert checked > 50  # 77 in the store committed with this test
