"""Export the results store: one record per run, as JSON Lines or CSV, in a stable schema.

``peftbench export --format jsonl|csv [--store S] [--out FILE] [--phase final|tune|all]
[--status ok|failed|pruned|all]`` writes every run of the store (both filters default to ``all``)
to ``FILE``, or to standard output when ``--out`` is ``-`` (the default). ``peftbench leaderboard``
writes ``results.jsonl`` (every final run, whatever its status) beside the markdown it publishes.

Schema
------

One record per run, holding exactly the fields of the store's ``runs`` table, in the table's
column order (what each one means: docs/store.md, "Fields of a run record"):

    run_id, spec_key, suite, task, group, method, backbone, budget, budget_params,
    budget_reached, size, trainable_params, head_params, total_params, hparams, settings, seed,
    data_fraction, phase, metric, val_metric, test_metric, train_seconds, train_samples_per_s,
    eval_samples_per_s, merged_eval_samples_per_s, peak_memory_mb, adapter_bytes, status, error,
    details, env, created_at, outcomes

Types: text (``run_id``, ``spec_key``, ``suite``, ``task``, ``group``, ``method``, ``backbone``,
``budget``, ``phase``, ``metric``, ``status``, ``error``, ``outcomes``, ``created_at``); integers
(``budget_params``, ``budget_reached``, ``trainable_params``, ``head_params``, ``total_params``,
``seed``, ``adapter_bytes``); numbers (``data_fraction``, ``val_metric``, ``test_metric``,
``train_seconds``, ``train_samples_per_s``, ``eval_samples_per_s``,
``merged_eval_samples_per_s``, ``peak_memory_mb``); JSON objects, the nested fields (``size``,
``hparams``, ``settings``, ``details``, ``env``). Every field may be missing (null) in a record
but ``run_id``, ``spec_key``, ``suite``, ``task``, ``method``, ``backbone``, ``status`` and
``created_at``; rows from older stores hold null in the fields added since (``budget_params``,
``outcomes``).

``outcomes`` stays the store's compact string (``bits:N:<base64>`` or ``f32:<base64>``):
``peftbench.outcomes.decode`` turns it into one value per test example.

Order: by ``created_at``, then ``run_id``, so two exports of one store are identical and two
exports of a growing store differ by the lines added.

JSON Lines (``--format jsonl``): one JSON object per line, keys in the column order above, every
field present (null where the store holds NULL), values as JSON (numbers as numbers, nested fields
as objects), compact separators, ASCII only (other characters escaped as ``\\uXXXX``), ``\\n``
line ends. A number that is not finite (NaN, infinity) is written as null, so every line is
strict JSON. Load it with ``[json.loads(line) for line in open(path)]`` or
``pandas.read_json(path, lines=True)``.

CSV (``--format csv``): RFC 4180 as Python's ``csv`` module writes it, ``,`` separated, a header
row of the field names in the column order above, ``"`` quoting only where a cell needs it,
``\\n`` line ends, UTF-8. An empty cell is null. Integers and numbers in Python's shortest
round-trip form (``1e-05``, ``310.0``); not finite numbers as empty cells. The nested fields
(``size``, ``hparams``, ``settings``, ``details``, ``env``) as compact JSON text (as in jsonl,
e.g. ``{"r":8}``). ``outcomes`` can be long (a regression task's ``f32`` outcomes take 5.4
characters per test example): raise ``csv.field_size_limit`` to read a store of large test
splits with the ``csv`` module.

Stability: fields are never renamed or reordered; a field the store gains later (a schema
migration adds a column at the end of the table) is appended after ``created_at``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import JSON

from .records import RunRecord
from .store import FIELDS, runs

#: the fields whose values are JSON objects: compact JSON text in CSV
NESTED = tuple(c.name for c in runs.columns if isinstance(c.type, JSON))


def _finite(value):
    """``value`` with every non-finite float, nested ones included, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _compact(value) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def rows(records: Iterable[RunRecord | dict]) -> list[dict]:
    """The records as export rows: every field, in the store's column order, non-finite numbers
    as None, sorted by ``created_at`` then ``run_id``."""
    out = []
    for record in records:
        record = record.row() if isinstance(record, RunRecord) else record
        out.append({key: _finite(record.get(key)) for key in FIELDS})
    return sorted(out, key=lambda r: (r["created_at"] or "", r["run_id"] or ""))


def jsonl_text(records: Iterable[RunRecord | dict]) -> str:
    return "".join(_compact(row) + "\n" for row in rows(records))


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return _compact(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def csv_text(records: Iterable[RunRecord | dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIELDS)
    for row in rows(records):
        writer.writerow([_cell(row[key]) for key in FIELDS])
    return buffer.getvalue()


def write_text(text: str, path: str | Path) -> None:
    """``text`` to standard output (``path`` ``-``) or to a file, whole or not at all: it is written
    beside the file and moved over it. Raises OSError when the file cannot be written."""
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_jsonl(records: Iterable[RunRecord | dict], path: str | Path) -> int:
    """Write ``records`` as JSON Lines (the schema above) to ``path`` (``-``: standard output);
    returns how many."""
    records = list(records)
    write_text(jsonl_text(records), path)
    return len(records)


def write_csv(records: Iterable[RunRecord | dict], path: str | Path) -> int:
    """Write ``records`` as CSV (the schema above) to ``path`` (``-``: standard output); returns how many."""
    records = list(records)
    write_text(csv_text(records), path)
    return len(records)


#: --format -> its writer
WRITERS = {"jsonl": write_jsonl, "csv": write_csv}
