"""The leaderboard as data: a page of sections, each a sequence of blocks (headings, markdown text,
tables of cells, figures, interactive scatters). ``peftbench.board.build`` makes it from the store
once; ``peftbench.board.markdown`` and ``peftbench.board.html`` render it. A cell keeps the numbers
behind its text (estimate, interval, verdict), so renderers and tests never parse what is shown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from ..stats import Interval

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Cell:
    """One table cell: the text shown and, where it is a number, the number (``value``, which sorts
    it), its 95% interval and its verdict ("best", "chance", "better", "worse", "reference")."""

    text: str
    value: float | None = None
    low: float | None = None
    high: float | None = None
    verdict: str | None = None

    @classmethod
    def of(cls, interval: Interval | None, text: str, verdict: str | None = None) -> Cell:
        if interval is None:
            return cls(text)
        low, high = (interval.low, interval.high) if interval.known else (None, None)
        return cls(text, interval.estimate, low, high, verdict)


@dataclass(frozen=True)
class Row:
    """A table row; ``method`` and ``budget`` where it is one (filters follow them), ``reported`` for
    numbers from papers (never ranked), ``details`` what the page shows on demand (hyper-parameters,
    provenance), as label -> text."""

    cells: tuple[Cell, ...]
    method: str | None = None
    budget: str | None = None
    reported: bool = False
    details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Table:
    """``role`` names what the table is ("scores", "deltas", ...); ``tasks`` maps a column to the
    task it shows ("" for a mean over tasks, None for a column of no task), for the task filter."""

    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    role: str = "table"
    tasks: tuple[str | None, ...] = ()

    @classmethod
    def of_frame(cls, df: pd.DataFrame, role: str = "table", keyed: bool = True) -> Table:
        """A table of text cells from a frame of strings (``method`` and ``budget`` columns key its rows)."""
        columns = tuple(str(c) for c in df.columns)
        rows = []
        for values in df.itertuples(index=False, name=None):
            named = dict(zip(columns, values))
            rows.append(Row(tuple(Cell(_text(v)) for v in values),
                            named.get("method") if keyed else None, named.get("budget") if keyed else None))
        return cls(columns, tuple(rows), role)

    def column(self, name: str) -> list[Cell]:
        index = self.columns.index(name)
        return [row.cells[index] for row in self.rows]


def _text(value) -> str:
    return "-" if value is None or (isinstance(value, float) and value != value) else str(value)


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Text:
    """Markdown lines written by peftbench (one paragraph or list); names from records inside are
    escaped by the HTML renderer like everything else."""

    lines: tuple[str, ...]

    @classmethod
    def of(cls, *lines: str) -> Text:
        return cls(tuple(lines))


@dataclass(frozen=True)
class Figure:
    """A drawn figure (PNG), ``path`` relative to the page."""

    path: str
    alt: str


@dataclass(frozen=True)
class Point:
    """One row of a scatter: the score with its interval, and each x the page can choose."""

    method: str
    budget: str
    label: str
    y: float
    low: float | None
    high: float | None
    x: dict[str, float]


@dataclass(frozen=True)
class Scatter:
    """The interactive Pareto plot: score against a resource chosen on the page. ``axes``: the
    x choices, name -> whether lower is better; ``y_higher``: whether a higher score is better."""

    title: str
    y_label: str
    y_higher: bool
    scale: float  # shown values are value * scale (100 for accuracy)
    axes: dict[str, bool]
    points: tuple[Point, ...]


Block = Union[Heading, Text, Table, Figure, Scatter]


@dataclass
class Section:
    """One suite on one backbone (or a page-level part, such as the failed runs)."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(blocks)
        return self

    def tables(self, role: str) -> list[Table]:
        return [b for b in self.blocks if isinstance(b, Table) and b.role == role]


@dataclass
class Board:
    """The page: a preamble and its sections."""

    preamble: list[Block] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
