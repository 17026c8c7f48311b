"""Tables for people: a pandas DataFrame rendered by tabulate, as markdown or as plain text.

    from peftbench import tables
    df = pandas.DataFrame(rows)           # one dict per row; columns in the order given
    print(tables.text(df))                # aligned plain text, for the terminal
    page += tables.markdown(df)           # a GitHub markdown table

Cells are shown as given: strings stay strings (numbers are not re-parsed, so "0.10" stays
"0.10"); format numbers before building the frame when their look matters. Missing values
(None, NaN) show as "-"; a ``|`` inside a markdown cell is escaped. The index is not shown
unless ``index=True``.
"""

from __future__ import annotations

import re

from typing import TYPE_CHECKING

from tabulate import tabulate

if TYPE_CHECKING:
    import pandas as pd

MISSING = "-"
_UNESCAPED_BAR = re.compile(r"(?<!\\)\|")


def _cells(df: pd.DataFrame, index: bool) -> tuple[list[list[str]], list[str]]:
    frame = df.reset_index() if index else df
    rows = [[MISSING if _missing(v) else str(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    return rows, [str(c) for c in frame.columns]


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def markdown(df: pd.DataFrame, *, index: bool = False, aligned: bool = False) -> str:
    """A GitHub-flavoured markdown table (no trailing newline). Compact rows, ``| a | b |``, unless
    ``aligned``, which pads every column to its width (easier to read as source, larger)."""
    rows, headers = _cells(df, index)
    rows = [[c.replace("|", "\\|") for c in row] for row in rows]  # a bar inside a cell is no column break
    headers = [c.replace("|", "\\|") for c in headers]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    if aligned:
        return table
    lines = []
    for i, line in enumerate(table.splitlines()):
        cells = [c.strip() for c in _UNESCAPED_BAR.split(line.strip()[1:-1])]
        if i == 1:  # the rule under the header; keep alignment colons
            cells = [(":" if c.startswith(":") else "") + "---" + (":" if c.endswith(":") else "") for c in cells]
            lines.append("|" + "|".join(cells) + "|")
        else:
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def text(df: pd.DataFrame, *, index: bool = False) -> str:
    """A plain-text table with aligned columns, for a terminal (no trailing newline)."""
    rows, headers = _cells(df, index)
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
