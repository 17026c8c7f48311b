"""The plan `peftbench run` prints first: its runs, its estimate from timed steps (cached), the
overrides that make a sweep of more than a day fit, and `--dry-run`, which writes nothing."""

import json

import pytest
from conftest import digest, tiny_run

from peftbench import estimate as est
from peftbench.cli import main
from peftbench.estimate import DAY, Cost, Shape, critical_path, fitting_overrides, unit_parts
from peftbench.records import Phase
from peftbench.runner import RunOptions, Sweep


def plan(**options):
    options = {"backbone": "tiny-dinov2", "image_size": 28, "trials": 2, "seeds": 1, "progress": False, **options}
    return Sweep("lora,linear", "quick", RunOptions(**options)).plan()


@pytest.fixture
def timed(monkeypatch, tmp_path):
    """Plans time their steps, into a cache of the test's own."""
    monkeypatch.setenv("PEFTBENCH_ESTIMATE", "1")
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / est.CACHE_FILE


def test_a_run_costs_its_steps_its_scoring_and_its_setup():
    cell = next(c for c in plan(epochs=3).cells if c.task.id == "quick/digits" and c.method.name == "lora")
    splits = plan().splits["quick/digits"]
    assert (len(splits.train), len(splits.val), len(splits.trainval)) == (800, 200, 1000)
    cost = Cost(step_s=1.0, eval_s=0.01, setup_s=2.0, eval_fixed_s=0.5)
    # a trial: 3 epochs of 25 batches of 32; val after the last epoch only (2 trials: nothing to prune)
    assert unit_parts(cell, Phase.TUNE, cost, splits) == pytest.approx((2.0, 75.0, 0.5 + 2.0))
    # a final run: 32 batches a epoch on train+val; test, then the merged copy and its speed on 256 examples
    test = len(splits.test)
    assert unit_parts(cell, Phase.FINAL, cost, splits) == pytest.approx((4.0, 96.0, 1.0 + 0.01 * (test + 256)))
    # a cap on the training examples and fewer epochs shrink the steps alone
    assert unit_parts(cell, Phase.TUNE, cost, splits, Shape(2, 1, 1, cap=320))[1] == pytest.approx(10.0)
    # a method that cannot take a step costs nothing: its runs fail at once
    assert unit_parts(cell, Phase.TUNE, Cost(0, 0, 0, error="no"), splits) == (0.0, 0.0, 0.0)


def test_workers_share_the_runs_but_not_a_chain_of_runs_that_wait_for_each_other():
    assert critical_path([3, 5], [2, 2], [4, 1]) == 5 + 4 + 4
    p = plan(epochs=1, trials=0, seeds=4)
    found = {cell.study: Cost(1.0, 0.0, 0.0) for cell in p.cells}
    keys = {unit.key for unit in p.units()}
    one = est.estimate(p, keys, found, workers=1, startup_s=10)
    four = est.estimate(p, keys, found, workers=4, startup_s=10)
    assert one.seconds == pytest.approx(one.training_s + 10)
    assert four.seconds == pytest.approx(one.training_s / 4 + 20)  # every worker starts and plans again
    # a resumed sweep costs what it has left
    left = {unit.key for unit in p.units()[:2]}
    assert est.estimate(p, left, found, 1, 0).training_s < one.training_s


def test_overrides_that_make_a_sweep_of_more_than_a_day_fit_are_computed_and_do_fit():
    p = plan(epochs=10, trials=8, seeds=3)
    found = {cell.study: Cost(step_s=10.0, eval_s=0.0, setup_s=0.0) for cell in p.cells}
    assert est.estimate(p, None, found, 1, 0).seconds > DAY
    fits = fitting_overrides(p, found, workers=1, startup_s=0)
    flags = dict(item.split(" ", 1) for item in fits)
    assert set(flags) >= {"--trials", "--epochs", "--max-train-examples", "--tasks"}

    def seconds(**change):
        shapes = {cell.study: Shape(**{**Shape.of(cell).__dict__, **change}) for cell in p.cells}
        return est.estimate(p, None, found, 1, 0, shapes).seconds

    for flag, field in (("--trials", "trials"), ("--epochs", "epochs"), ("--max-train-examples", "cap")):
        value = int(flags[flag])
        assert seconds(**{field: value}) <= DAY < seconds(**{field: value + 1}), flag  # the largest that fits
    assert flags["--tasks"] == "quick/digits"


@pytest.mark.slow  # times real (tiny) steps, and runs a sweep
def test_dry_run_prints_the_plan_and_estimate_and_writes_nothing(timed, tmp_path, capsys):
    store = tmp_path / "r.db"
    assert main(tiny_run("lora,linear", "--dry-run", tasks="quick", trials=1, store=store)) == 0
    out, err = capsys.readouterr()
    assert not store.exists() and out == ""
    assert "plan: 8 runs, 8 to run" in err and "2 tasks x 2 methods x (1 trial + 1 seed) = 8 runs" in err
    assert "tiny-dinov2 at 28 px, batch 32, 1 epoch" in err and "timed now" in err
    assert "estimate: " in err and "peak memory" in err and "exceeds a day" not in err
    cached = json.loads(timed.read_text())
    # the probe trains its head on cached features: its step may round to nothing, LoRA's may not
    assert len(cached) == 2 and any(entry["step_s"] > 0 for entry in cached.values())

    # the run prints the same plan first, from the cache, then runs
    assert main(tiny_run("lora,linear", tasks="quick/digits", trials=1, store=store)) == 0
    err = capsys.readouterr().err
    assert err.index("plan: 4 runs") < err.index("estimate:") < err.index("[1/4]") and "(cached)" in err
    before = digest(store)
    assert main(tiny_run("lora,linear", "--dry-run", tasks="quick", trials=1, store=store)) == 0
    err = capsys.readouterr().err
    assert "plan: 8 runs, 4 already in the store, 4 to run" in err and "needs --resume" in err
    assert digest(store) == before


def test_a_sweep_of_more_than_a_day_says_so_and_names_the_overrides_that_fit(timed, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(est, "measure", lambda cell, splits: Cost(step_s=20.0, eval_s=0.001, setup_s=1.0))
    argv = tiny_run("lora", "--dry-run", tasks="quick", epochs=10, trials=8, seeds=3, store=tmp_path / "r.db")
    assert main(argv) == 0
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "exceeds a day" in line)
    assert "--trials " in line and "--epochs " in line and "--tasks quick/digits" in line
    assert "the run starts anyway" in line


def test_a_worker_prints_no_plan(timed, monkeypatch, tmp_path, capsys):
    from peftbench.envinfo import STARTED_ENV

    monkeypatch.setenv(STARTED_ENV, "2026-01-01T00:00:00+00:00")  # as its parent sets it
    assert main(tiny_run("linear", "--dry-run", store=tmp_path / "r.db")) == 0
    assert "plan:" not in capsys.readouterr().err and not timed.exists()
