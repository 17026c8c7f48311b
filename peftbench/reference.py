"""Numbers reported in the literature (``peftbench/reported/published.csv``), shown beside measured rows."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

PUBLISHED = Path(__file__).resolve().parent / "reported" / "published.csv"
#: metrics the file states in percent; the store keeps them as fractions
PERCENT = {"accuracy"}


@dataclass(frozen=True)
class Reported:
    suite: str
    task: str
    method: str  # the peftbench method it corresponds to
    reported_as: str  # the source's own name for it
    reported_backbone: str
    backbone: str  # the same model as a peftbench backbone name; "" where there is none
    metric: str
    value: float  # on the store's scale (accuracy as a fraction)
    params: str  # trainable parameters as the source gives them
    source: str


def published(path: str | Path | None = None) -> list[Reported]:
    """Every reported number; none when the file is absent (an install without the source tree)."""
    path = Path(path) if path is not None else PUBLISHED
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [Reported(**{**row, "value": float(row["value"]) / (100 if row["metric"] in PERCENT else 1)})
            for row in rows]
