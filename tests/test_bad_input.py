"""Bad input, table-driven: one line naming the bad value, exit code 2, no traceback, and the
results store left byte for byte as it was."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update
from conftest import cli_env, digest, make_vtab, tiny_run

from peftbench.cli import main
from peftbench.store import Store, meta

pytestmark = pytest.mark.slow  # every case needs the store that a run in a subprocess leaves (~20 s)

TINY = ["--backbone", "tiny-dinov2", "--image-size", "28", "--epochs", "1", "--no-progress"]
RUN = ["run", "--methods", "linear", "--tasks", "quick/digits"]
DTD = ["run", "--methods", "linear", "--tasks", "vtab/dtd", "--backbone", "tiny-vit", "--image-size", "16",
       "--epochs", "1", "--trials", "0", "--seeds", "1", "--no-progress"]


def vtab_damaged(root: Path, damage) -> Path:
    damage(make_vtab(root, classes=47, sizes=(47, 47, 47)))
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store holding one finished run, and the damaged inputs the cases point at."""
    root = tmp_path_factory.mktemp("bad")
    store = root / "results.db"
    # in a process of its own: its connections close when it ends, so the write-ahead log is
    # checkpointed into the file now, not when a lingering connection is collected mid-test
    seeded = subprocess.run([sys.executable, "-m", "peftbench.cli", *tiny_run("linear", store=store)],
                            capture_output=True, text=True, timeout=600, env=cli_env())
    assert seeded.returncode == 0, seeded.stderr
    newer = root / "newer.db"
    shutil.copy(store, newer)
    engine = Store(str(newer)).engine
    with engine.begin() as conn:
        conn.execute(update(meta).where(meta.c.key == "schema_version").values(value="99"))
    engine.dispose()
    (root / "junk.db").write_bytes(b"not a database" * 64)
    (root / "a-file").write_text("not a folder")
    (root / "empty").mkdir()
    vtab_damaged(root / "no-image", lambda f: (f / "images" / "2.png").unlink())
    vtab_damaged(root / "corrupt", lambda f: (f / "images" / "1.jpg").write_bytes(b"\xff\xd8 garbage"))
    vtab_damaged(root / "no-list", lambda f: (f / "test.txt").unlink())
    make_vtab(root / "classes", classes=3, sizes=(6, 3, 9))
    return root


CASES = {
    # what to run
    "unknown method": ([*RUN, "--methods", "nope"], "nope"),
    "unknown method in a list": ([*RUN, "--methods", "linear,nope"], "nope"),
    "no method": ([*RUN, "--methods", " , "], "no methods"),
    "unknown suite": ([*RUN, "--tasks", "nosuite"], "nosuite"),
    "unknown task": ([*RUN, "--tasks", "quick/nothere"], "quick/nothere"),
    "unknown group": ([*RUN, "--tasks", "vtab-fancy"], "vtab-fancy"),
    "unknown backbone": ([*RUN, "--backbone", "resnet"], "resnet"),
    "text backbone for images": ([*RUN, "--backbone", "tiny-llama"], "tiny-llama"),
    "unknown subcommand": (["frobnicate"], "frobnicate"),
    "unknown list": (["list", "things"], "things"),
    "unknown option": ([*RUN, "--fast"], "--fast"),
    # budgets
    "budget not a size": ([*RUN, "--budget", "lots"], "lots"),
    "budget with a unit": ([*RUN, "--budget", "8MB"], "8MB"),
    "budget negative": ([*RUN, "--budget", "-5"], "-5"),
    "budget knob unknown": ([*RUN, "--budget", "lora:x=8"], "lora:x=8"),
    "budget method unknown": ([*RUN, "--budget", "nomethod:r=8"], "nomethod"),
    "budget too small": ([*RUN, "--methods", "lora", "--budget", "10"], "too small"),
    # counts and lists
    "fraction not a number": ([*RUN, "--fractions", "0.1,x"], "'x'"),
    "fraction zero": ([*RUN, "--fractions", "0,0.5"], "0 is not in (0, 1]"),
    "fraction above one": ([*RUN, "--fractions", "1.5"], "1.5"),
    "seeds zero": ([*RUN, "--seeds", "0"], "'0'"),
    "seeds negative": ([*RUN, "--seeds", "-2"], "-2"),
    "seeds not a number": ([*RUN, "--seeds", "two"], "two"),
    "trials negative": ([*RUN, "--trials", "-1"], "-1"),
    "trials fractional": ([*RUN, "--trials", "1.5"], "1.5"),
    "epochs not a number": ([*RUN, "--epochs", "x"], "'x'"),
    "batch size zero": ([*RUN, "--batch-size", "0"], "'0'"),
    "unknown eval mode": ([*RUN, "--eval-mode", "bogus"], "bogus"),
    "image smaller than a patch": ([*RUN, "--image-size", "6"], "below dinov2-s's patch size of 14"),
    "unknown target": ([*RUN, "--targets", "q,wq"], "'wq'"),
    "target the backbone lacks": ([*RUN, "--backbone", "hmoe-attention", "--tasks", "hmoe/shared", "--targets", "q,up"],
                                  "no 'up' projection"),
    # data
    "no data root": (DTD, "--data-root"),
    "missing data root": ([*DTD, "--data-root", "{root}/nowhere"], "nowhere"),
    "data root a file": ([*DTD, "--data-root", "{root}/a-file"], "a-file"),
    "empty data root": ([*DTD, "--data-root", "{root}/empty"], "dtd"),
    "missing list file": ([*DTD, "--data-root", "{root}/no-list"], "test.txt"),
    "list names a missing image": ([*DTD, "--data-root", "{root}/no-image"], "images/2.png"),
    "corrupt image": ([*DTD, "--data-root", "{root}/corrupt"], "images/1.jpg"),
    "class count mismatch": ([*DTD, "--data-root", "{root}/classes"], "47"),
    # stores
    "store under a file": ([*RUN, *TINY, "--store", "{root}/a-file/results.db"], "a-file"),
    "store not a database": ([*RUN, *TINY, "--store", "{root}/junk.db"], "junk.db"),
    "store read-only": ([*RUN, *TINY, "--resume", "--store", "sqlite:///file:{root}/results.db?mode=ro&uri=true"],
                        "read-only"),
    "store of a newer schema": ([*RUN, *TINY, "--store", "{root}/newer.db"], "schema version 99"),
    "store dialect unknown": ([*RUN, *TINY, "--store", "nosuchdb://host/db"], "nosuchdb"),
    "leaderboard of no store": (["leaderboard", "--store", "{root}/missing.db", "--out", "{root}/b.md"], "missing.db"),
    "leaderboard of a newer store": (["leaderboard", "--store", "{root}/newer.db", "--out", "{root}/b.md"], "99"),
    # outputs
    "leaderboard out under a file": (["leaderboard", "--store", "{root}/results.db", "--out",
                                      "{root}/a-file/board/README.md"], "a-file"),
    "export of no store": (["export", "--store", "{root}/missing.db", "--format", "jsonl", "--out", "{root}/b.md"],
                           "missing.db"),
    "export of a newer store": (["export", "--store", "{root}/newer.db", "--format", "csv"], "99"),
    "export out under a file": (["export", "--store", "{root}/results.db", "--format", "csv", "--out",
                                 "{root}/a-file/runs.csv"], "a-file"),
    "export format unknown": (["export", "--store", "{root}/results.db", "--format", "xml"], "xml"),
    "export phase unknown": (["export", "--store", "{root}/results.db", "--format", "jsonl", "--phase", "trial"],
                             "trial"),
    "export status unknown": (["export", "--store", "{root}/results.db", "--format", "jsonl", "--status", "done"],
                              "done"),
    # conflicts
    "rerun without --resume": (tiny_run("linear"), "--resume"),
    "eval mode for images": ([*RUN, *TINY, "--eval-mode", "text"], "--eval-mode"),
    "image size for text": (["run", "--methods", "lora", "--tasks", "commonsense/piqa", "--data-root", "{root}/empty",
                             "--image-size", "32"], "--image-size"),
}


@pytest.mark.parametrize("argv, named", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_line_exit_2_and_the_store_stays_byte_identical(world, capsys, argv, named):
    argv = [part.format(root=world) for part in argv]
    if argv[0] == "run" and "--store" not in argv:
        argv += ["--store", str(world / "results.db")]
    stores = sorted(world.glob("*.db"))
    before = {path: digest(path) for path in stores}
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("peftbench: error:") and "\n" not in err, err
    assert "Traceback" not in err and named in err, err
    assert {path: digest(path) for path in stores} == before
    assert not (world / "missing.db").exists() and not (world / "b.md").exists()


