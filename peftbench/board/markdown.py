"""The leaderboard model as GitHub markdown: each block followed by a blank line; scatters, which
need a browser, are left to the HTML page (their PNG figure stands beside them)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import tables
from ..store import Store
from .build import build
from .model import Block, Board, Figure, Heading, Scatter, Table, Text


def block(item: Block) -> list[str]:
    """A block's lines (no blank line after it)."""
    if isinstance(item, Heading):
        return ["#" * item.level + " " + item.text]
    if isinstance(item, Text):
        return list(item.lines)
    if isinstance(item, Table):
        frame = pd.DataFrame([[c.text for c in row.cells] for row in item.rows], columns=list(item.columns))
        return tables.markdown(frame).splitlines()
    if isinstance(item, Figure):
        return [f"![{item.alt}]({item.path})"]
    if isinstance(item, Scatter):
        return []
    raise TypeError(f"not a leaderboard block: {item!r}")


def blocks(items: list[Block]) -> list[str]:
    return [line for item in items for lines in [block(item)] if lines for line in (*lines, "")]


def render(board: Board) -> str:
    out = blocks(board.preamble)
    for section in board.sections:
        out += [f"## {section.title}", "", *blocks(section.blocks)]
    return "\n".join(out)


def page(store: Store, out_path: str | Path | None = None, **options) -> str:
    """The store's leaderboard as markdown (``peftbench.board.build.build`` takes ``options``)."""
    return render(build(store, out_path, **options))
