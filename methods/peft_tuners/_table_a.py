"""Table entries for part of peft's tuner types (see table.py for what an entry says)."""

from __future__ import annotations

from .table import Entry

ENTRIES: dict[str, Entry] = {}
