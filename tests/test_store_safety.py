"""The store across versions and concurrent writers, and files that load without running code."""

import multiprocessing
import re
from pathlib import Path

from conftest import stub_record, tiny_run
from safetensors import safe_open
from sqlalchemy import Column, MetaData, String, Table, create_engine, inspect, insert

from peftbench.cli import main
from peftbench.store import SCHEMA_VERSION, Store, meta, runs

ROOT = Path(__file__).resolve().parents[1]


def record(i, prefix="r"):
    return stub_record(f"{prefix}{i}", test_metric=i / 100)


def test_a_version_1_store_migrates_forward_and_keeps_its_runs(tmp_path):
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    old = MetaData()
    # version 1: the runs table without the columns later versions added, and no claims table
    Table("runs", old, *(Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
                         for c in runs.columns if c.name not in ("budget_params", "outcomes")))
    Table("peftbench_meta", old, Column("key", String(64), primary_key=True), Column("value", String(256)))
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(old.tables["runs"]).values(**record(1), created_at="2026-01-01T00:00:00+00:00"))
        conn.execute(insert(old.tables["peftbench_meta"]).values(key="schema_version", value="1"))
    engine.dispose()

    store = Store(str(path))
    assert [r["run_id"] for r in store.records()] == ["r1"]
    with store.engine.connect() as conn:
        assert inspect(conn).has_table("claims")
        assert conn.execute(meta.select()).all() == [("schema_version", str(SCHEMA_VERSION))]
    store.add({**record(2), "budget_params": 147_456})
    assert [r["budget_params"] for r in store.records()] == [None, 147_456]  # the old row keeps NULL


def _write_many(path, prefix, n):
    store = Store(path)
    for i in range(n):
        store.add(record(i, prefix))


def test_two_processes_writing_one_store_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "shared.db")
    Store(path)
    spawn = multiprocessing.get_context("spawn")
    writers = [spawn.Process(target=_write_many, args=(path, prefix, 150)) for prefix in ("a", "b")]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=300)
        assert w.exitcode == 0
    ids = [r["run_id"] for r in Store(path).records()]
    assert len(ids) == len(set(ids)) == 300


def test_final_runs_save_their_trained_tensors_as_safetensors(tmp_path):
    store = str(tmp_path / "r.db")
    assert main(tiny_run("lora", store=store)) == 0
    (r,) = Store(store).records()
    path = Path(r["details"]["trained_tensors"])
    assert path.parent == tmp_path / "adapters" and path.suffix == ".safetensors"
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["method"] == "lora" and f.metadata()["task"] == "quick/digits"
        sizes = {key: f.get_tensor(key).numel() for key in f.keys()}
    assert any("lora_A" in key for key in sizes) and any("head" in key for key in sizes)
    assert sum(sizes.values()) == r["trainable_params"] + r["head_params"]


def test_nothing_is_unpickled_or_executed_from_files():
    """torch.load only with weights_only=True; no pickle, eval or exec on anything read."""
    risky = re.compile(r"torch\.load\((?![^)]*weights_only=True)|import (c?pickle|dill|marshal)|pickle\.loads?\(|"
                       r"(?<![.\w])(eval|exec)\(|yaml\.load\(|trust_remote_code=True")
    found = [f"{path.relative_to(ROOT)}:{n}" for folder in ("peftbench", "methods", "tasks")
             for path in sorted((ROOT / folder).rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if risky.search(line)]
    assert found == []


def test_outcomes_round_trip_compactly():
    import numpy as np

    from peftbench.outcomes import decode, encode

    right = np.array([True, False, True] * 333 + [False])
    text = encode(right)
    assert len(text) < 200 and (decode(text) == right).all() and decode(text).dtype == bool
    errors = np.array([0.5, 1e-3, 2.25], dtype=np.float32)
    assert (decode(encode(errors)) == errors).all()
