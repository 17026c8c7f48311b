"""Exports of the store (JSON Lines and CSV: every field round-trips, a deterministic order, the
filters) and where ``peftbench leaderboard`` writes: beside the store by default, never over the
published ./leaderboard/README.md unless asked, a folder as --out, results.jsonl beside the
markdown, one line and exit 2 for a path that cannot be written."""

import csv
import io
import json
import math
import re
import shutil
from pathlib import Path

import pytest
from conftest import digest
from sqlalchemy import JSON, Float, Integer

import peftbench.board.build
import peftbench.export
from peftbench.board.model import Board, Heading, Text
from peftbench.cli import EXPORT_FORMATS, main
from peftbench.export import NESTED, WRITERS, write_jsonl
from peftbench.outcomes import decode, encode
from peftbench.store import FIELDS, Store, runs

ENV = {"packages": {"peftbench": "0.1.0", "torch": "2.14.1"}, "python": "3.11.7", "git_commit": "abc123",
       "device": "cpu (x86_64)", "threads": 1, "worker": {"machine": "m", "process": 7}}


def record(run_id, created_at, *, method="lora", phase="final", status="ok", task="digits", seed=0, **extra):
    """A full run record: every field of the store set (a failed or pruned run has no scores)."""
    ok, final = status == "ok", phase == "final"
    return {
        "run_id": run_id, "spec_key": f"key-{run_id}", "suite": "quick", "task": task, "group": "natural",
        "method": method, "backbone": "dinov2-s", "budget": "lora:r=8", "budget_params": 147_456, "budget_reached": 1,
        "size": {"r": 8}, "trainable_params": 147_456, "head_params": 650, "total_params": 22_056_576,
        "hparams": {"lr": 1e-3, "weight_decay": 1e-4, "head_lr": 3e-3, "alpha": 16},
        "settings": {"backbone": "dinov2-s", "image_size": 56, "epochs": 3, "batch_size": 32, "trials": 2,
                     "seeds": 1, "targets": ["q", "v"], "overrides": ["epochs"]},
        "seed": seed, "data_fraction": 0.3, "phase": phase, "metric": "accuracy",
        "val_metric": 0.8125 if ok and not final else None, "test_metric": 0.7109375 if ok and final else None,
        "train_seconds": 12.5, "train_samples_per_s": 81.3, "eval_samples_per_s": 250.25 if ok else None,
        "merged_eval_samples_per_s": 260.5 if ok and final else None, "peak_memory_mb": 310.0,
        "adapter_bytes": 592_424, "status": status,
        "error": None if ok else f"{status}: loss, was NaN \"at\" step 3",
        "details": ({"selected": {"trial": 1, "lr": 1e-3}, "trained_tensors": f"adapters/{run_id}.safetensors",
                     "train_examples": 1078} if final else
                    {"study": "quick|lora|...", "slot": 1, "trial": 1, "val_curve": [0.5, 0.8125]}),
        "outcomes": encode([True, False, True] * 43) if ok and final else None,
        "env": {**ENV, **({} if ok else {"traceback": "Traceback (most recent call last):\n  ...\nValueError: é"})},
        "created_at": created_at, **extra,
    }


RECORDS = [  # stored out of order; two share a created_at, so run_id breaks the tie
    record("d4", "2025-01-02T10:00:00+00:00", phase="tune", status="pruned"),
    record("b2", "2025-01-01T10:00:00+00:00", phase="tune"),
    record("e5", "2025-01-03T10:00:00+00:00", method="hora", status="failed"),
    record("c3", "2025-01-02T10:00:00+00:00", seed=1),
    record("a1", "2025-01-01T09:00:00+00:00", task="textures, \"cut\"", group=None, budget_params=None,
           outcomes=encode([0.25, 1.5])),  # an older row (NULLs) with a regression's outcomes
]
ORDER = ["a1", "b2", "c3", "d4", "e5"]


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "sweep" / "results.db"
    store = Store(str(path))
    for r in RECORDS:
        store.add(r)
    store.engine.dispose()  # the write-ahead log goes into the file now: reading leaves its bytes alone
    return path


def stored(path, **where) -> list[dict]:
    return Store(str(path), create=False).records(**where)


def export(path, fmt, *extra, capsys=None) -> str:
    """``peftbench export`` of the store at ``path`` to standard output, as text."""
    assert main(["export", "--store", str(path), "--format", fmt, *extra]) == 0
    return capsys.readouterr().out


def from_cell(cell: str, column):
    """A CSV cell back to its value, by the store column's type (the schema in peftbench.export)."""
    if cell == "":
        return None
    if isinstance(column.type, JSON):
        return json.loads(cell)
    if isinstance(column.type, Integer):
        return int(cell)
    if isinstance(column.type, Float):
        return float(cell)
    return cell


def typed(value):
    """A value with the type of every part, so 1 and 1.0 differ."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return type(value).__name__, value


# ---- the schema -------------------------------------------------------------------------------

def test_the_documented_schema_names_every_field_in_the_stores_order():
    listed = peftbench.export.__doc__.split('"Fields of a run record"):')[1].split("Types:")[0]
    assert re.findall(r"[a-z_]+", listed) == FIELDS
    types = peftbench.export.__doc__.split("Types:")[1].split("Every field")[0]
    assert sorted(re.findall(r"``([a-z_]+)``", types)) == sorted(FIELDS)  # each field has its type
    assert set(NESTED) == {"size", "hparams", "settings", "details", "env"}
    assert set(EXPORT_FORMATS) == set(WRITERS)


# ---- exports ----------------------------------------------------------------------------------

def test_jsonl_round_trips_every_field_in_order(store, capsys):
    lines = export(store, "jsonl", capsys=capsys).splitlines()
    loaded = [json.loads(line) for line in lines]
    assert [r["run_id"] for r in loaded] == ORDER
    assert all(list(r) == FIELDS for r in loaded)  # every field, the store's column order
    assert [typed(r) for r in loaded] == [typed(r) for r in stored(store)]
    assert all(line.isascii() and line == json.dumps(json.loads(line), separators=(",", ":"))
               for line in lines)  # compact, ASCII
    a1 = loaded[0]
    assert a1["group"] is None and a1["budget_params"] is None and a1["size"] == {"r": 8}
    assert decode(a1["outcomes"]).tolist() == [0.25, 1.5]
    assert decode(loaded[2]["outcomes"]).tolist() == [True, False, True] * 43
    assert loaded[-1]["env"]["traceback"].endswith("ValueError: é")


def test_csv_round_trips_every_field_in_order(store, capsys):
    text = export(store, "csv", capsys=capsys)
    assert "\r" not in text
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    assert header == FIELDS
    loaded = [{c.name: from_cell(cell, c) for c, cell in zip(runs.columns, row, strict=True)} for row in reader]
    assert [r["run_id"] for r in loaded] == ORDER
    assert [typed(r) for r in loaded] == [typed(r) for r in stored(store)]
    first = text.splitlines()[1]
    assert '"{""r"":8}"' in first  # a nested field: compact JSON text
    assert '"textures, ""cut"""' in first and ",250.25," in first


def test_csv_loads_with_pandas(store, tmp_path):
    pandas = pytest.importorskip("pandas")
    out = tmp_path / "runs.csv"
    assert main(["export", "--store", str(store), "--format", "csv", "--out", str(out)]) == 0
    frame = pandas.read_csv(out)
    assert list(frame.columns) == FIELDS and list(frame["run_id"]) == ORDER
    assert json.loads(frame["hparams"][0]) == {"lr": 1e-3, "weight_decay": 1e-4, "head_lr": 3e-3, "alpha": 16}
    assert frame["test_metric"][2] == 0.7109375 and math.isnan(frame["test_metric"][1])


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_exports_are_deterministic_and_a_file_holds_what_stdout_shows(store, tmp_path, capsys, fmt):
    first = export(store, fmt, capsys=capsys)
    assert export(store, fmt, capsys=capsys) == first
    out = tmp_path / f"runs.{fmt}"
    assert main(["export", "--store", str(store), "--format", fmt, "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == first
    assert capsys.readouterr().out.strip() == f"5 run(s) written to {out}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["sweep", out.name])  # no temporary file left


@pytest.mark.parametrize("filters, expected", [
    ([], ORDER),
    (["--phase", "final"], ["a1", "c3", "e5"]),
    (["--phase", "tune"], ["b2", "d4"]),
    (["--status", "ok"], ["a1", "b2", "c3"]),
    (["--status", "failed"], ["e5"]),
    (["--phase", "tune", "--status", "pruned"], ["d4"]),
    (["--phase", "final", "--status", "pruned"], []),
    (["--phase", "all", "--status", "all"], ORDER),
])
def test_phase_and_status_filters(store, capsys, filters, expected):
    lines = export(store, "jsonl", *filters, capsys=capsys).splitlines()
    assert [json.loads(line)["run_id"] for line in lines] == expected
    rows = export(store, "csv", *filters, capsys=capsys).splitlines()
    assert rows[0] == ",".join(FIELDS) and [row.split(",")[0] for row in rows[1:]] == expected


def test_a_folder_as_out_gets_results_of_the_format(store, tmp_path):
    assert main(["export", "--store", str(store), "--format", "csv", "--out", f"{tmp_path}/new/"]) == 0
    assert (tmp_path / "new" / "results.csv").read_text().startswith("run_id,spec_key,")
    assert main(["export", "--store", str(store), "--format", "jsonl", "--out", str(tmp_path / "new")]) == 0
    assert len((tmp_path / "new" / "results.jsonl").read_text().splitlines()) == 5


def test_write_jsonl_sorts_and_writes_non_finite_numbers_as_null(tmp_path):
    out = tmp_path / "results.jsonl"
    nan = record("f6", "2025-01-04T00:00:00+00:00", train_seconds=float("nan"),
                 details={"val_curve": [0.5, float("inf")]})
    assert write_jsonl([nan, *RECORDS], out) == 6
    loaded = [json.loads(line, parse_constant=pytest.fail) for line in out.read_text().splitlines()]
    assert [r["run_id"] for r in loaded] == [*ORDER, "f6"]
    assert loaded[-1]["train_seconds"] is None and loaded[-1]["details"]["val_curve"] == [0.5, None]


# ---- the leaderboard's outputs ----------------------------------------------------------------

@pytest.fixture
def rendered(monkeypatch):
    """The ``against`` of every leaderboard build. A stand-in for the leaderboard's build (tested in
    test_leaderboard and, through the command line, in test_cli), with its signature
    ``build(store, out_path, against=..., notes=...)``: it draws a figure into figures/ beside the markdown, as
    build does, and says how many final runs it saw."""
    seen = []

    def build(store, out_path=None, *, against="lora", notes=None):
        seen.append(against)
        figures = Path(out_path).parent / "figures"
        figures.mkdir(exist_ok=True)
        (figures / "quick-dinov2-s-pareto.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        return Board([Heading(1, "peftbench leaderboard"),
                      Text.of(f"{len(store.records(phase='final', status='ok'))} final runs ok")])

    monkeypatch.setattr(peftbench.board.build, "build", build)
    return seen


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A current folder holding a published leaderboard/README.md, which no default may touch."""
    cwd = tmp_path / "checkout"
    (cwd / "leaderboard").mkdir(parents=True)
    (cwd / "leaderboard" / "README.md").write_text("published")
    monkeypatch.chdir(cwd)
    return cwd


def final_ids(path) -> list[str]:
    return [json.loads(line)["run_id"] for line in path.read_text().splitlines()]


def test_leaderboard_defaults_beside_the_store_and_never_over_the_published_page(store, elsewhere, rendered,
                                                                                   capsys):
    assert main(["leaderboard", "--store", str(store)]) == 0
    board = store.parent / "leaderboard"
    assert (board / "README.md").read_text() == "# peftbench leaderboard\n\n2 final runs ok\n"
    assert final_ids(board / "results.jsonl") == ["a1", "c3", "e5"]  # every final run, failed too
    assert (board / "figures").is_dir()  # render was given the markdown's path: its figures sit beside it
    assert (elsewhere / "leaderboard" / "README.md").read_text() == "published"
    assert sorted(p.name for p in elsewhere.rglob("*")) == ["README.md", "leaderboard"]
    assert rendered == ["lora"]
    assert f"written to {board / 'README.md'}" in capsys.readouterr().out


def test_leaderboard_without_store_writes_under_runs(store, elsewhere, rendered):
    (elsewhere / "runs").mkdir()
    shutil.copy(store, elsewhere / "runs" / "results.db")
    assert main(["leaderboard", "--against", "hora"]) == 0
    assert (elsewhere / "runs" / "leaderboard" / "README.md").exists()
    assert final_ids(elsewhere / "runs" / "leaderboard" / "results.jsonl") == ["a1", "c3", "e5"]
    assert (elsewhere / "leaderboard" / "README.md").read_text() == "published"
    assert rendered == ["hora"]


@pytest.mark.parametrize("given", ["{tmp}/board/", "{tmp}/existing"])
def test_a_folder_as_out_gets_readme_and_results_jsonl(store, tmp_path, rendered, given):
    (tmp_path / "existing").mkdir()
    folder = tmp_path / given.split("/")[1]
    assert main(["leaderboard", "--store", str(store), "--out", given.format(tmp=tmp_path)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "figures", "results.jsonl"]


def test_publishing_into_leaderboard_takes_an_explicit_out(store, elsewhere, rendered):
    assert main(["leaderboard", "--store", str(store), "--out", "leaderboard/README.md"]) == 0
    assert "# peftbench leaderboard" in (elsewhere / "leaderboard" / "README.md").read_text()
    assert final_ids(elsewhere / "leaderboard" / "results.jsonl") == ["a1", "c3", "e5"]


@pytest.mark.parametrize("command", ["leaderboard", "export"])
@pytest.mark.parametrize("where, named", [
    ("{tmp}/a-file/board/README.md", "a-file"),  # under a file
    ("{tmp}/a-file/", "a-file"),
    ("{tmp}/taken/README.md/", "README.md"),  # a folder where the file goes
])
def test_an_unwritable_out_is_one_line_exit_2_and_nothing_is_written(store, tmp_path, capsys, rendered,
                                                                      command, where, named):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "taken" / "README.md" / "README.md").mkdir(parents=True)
    if command == "export":
        (tmp_path / "taken" / "README.md" / "results.csv").mkdir()
    before = digest(store)
    files = sorted(p for p in tmp_path.rglob("*") if "sweep" not in p.parts)
    extra = ["--format", "csv"] if command == "export" else []
    assert main([command, "--store", str(store), "--out", where.format(tmp=tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("peftbench: error: cannot write") and "\n" not in err and named in err, err
    assert sorted(p for p in tmp_path.rglob("*") if "sweep" not in p.parts) == files
    assert digest(store) == before
    assert rendered == []


def test_results_jsonl_that_cannot_be_written_leaves_the_markdown_as_it_was(store, tmp_path, capsys, rendered):
    board = tmp_path / "board"
    (board / "results.jsonl").mkdir(parents=True)
    (board / "README.md").write_text("before")
    assert main(["leaderboard", "--store", str(store), "--out", str(board)]) == 2
    assert "results.jsonl" in capsys.readouterr().err
    assert (board / "README.md").read_text() == "before"
    assert sorted(p.name for p in board.iterdir()) == ["README.md", "results.jsonl"]


def test_a_render_that_fails_to_write_leaves_no_folder_behind(store, tmp_path, capsys, monkeypatch):
    def build(store, out_path=None, *, against="lora", notes=None):
        (Path(out_path).parent / "figures").mkdir()
        raise PermissionError(13, "Permission denied")  # a figure that cannot be saved

    monkeypatch.setattr(peftbench.board.build, "build", build)
    assert main(["leaderboard", "--store", str(store), "--out", str(tmp_path / "new" / "board" / "README.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"peftbench: error: cannot write {tmp_path / 'new' / 'board' / 'README.md'}: Permission denied"
    assert not (tmp_path / "new").exists()
