"""Local workers: --workers N shares one store through the claims, each worker on its own device."""

import itertools
import json
import os
import shlex
import signal
import sqlite3
import time

import pytest
from conftest import tiny_run

from peftbench.cli import main
from peftbench.compute import pick_device
from peftbench.errors import UsageError
from peftbench.store import Store
from peftbench.workers import auto_workers, devices, threads


def test_each_worker_takes_its_own_gpu_and_a_share_of_the_cores():
    assert devices(4, gpus=4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert devices(3, gpus=2) == ["cuda:0", "cuda:1", "cuda:0"]
    assert devices(2, gpus=0) == ["cpu", "cpu"]
    assert threads(2, cores=2) == 1 and threads(3, cores=16) == 5 and threads(4, cores=2) == 1
    assert auto_workers(gpus=8, cores=64) == 8 and auto_workers(gpus=0, cores=2) == 2
    assert auto_workers(gpus=0, cores=64) == 4 and auto_workers(gpus=0, cores=1) == 1
    # never a worker without a run: one run left keeps every core in one process
    assert auto_workers(gpus=0, cores=2, runs_left=1) == 1 and auto_workers(gpus=8, cores=64, runs_left=3) == 3
    assert auto_workers(gpus=0, cores=2, runs_left=0) == 1


def test_auto_is_the_default_and_the_environment_can_change_it(monkeypatch):
    from peftbench import cli, defaults

    monkeypatch.setattr(defaults, "WORKERS", "auto")
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert cli._worker_count(None, runs_left=12) == 2 and cli._worker_count(None, runs_left=1) == 1
    assert cli._worker_count(3, runs_left=1) == 3  # asked for: as asked
    # a process --device or LOCAL_RANK placed (torchrun, a worker started by hand) is one worker
    assert cli._worker_count(None, runs_left=12, placed=True) == 1
    monkeypatch.setattr(defaults, "WORKERS", "two")
    with pytest.raises(UsageError, match="PEFTBENCH_WORKERS"):
        cli._worker_count(None, runs_left=12)


def test_workers_auto_on_a_gpu_host_starts_one_worker_per_gpu_each_pinned_to_its_gpu(monkeypatch):
    from peftbench import cli, defaults, workers

    monkeypatch.setattr("torch.cuda.device_count", lambda: 4)  # a host with 4 GPUs, faked
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    monkeypatch.setattr(defaults, "WORKERS", "auto")
    assert cli._worker_count(None, runs_left=12) == 4 and cli._worker_count("auto", runs_left=2) == 2
    started = []

    class Child:
        def __init__(self, argv, env, stdout):
            started.append((argv, env))

        def wait(self):
            return 0

    monkeypatch.setattr(workers.subprocess, "Popen", Child)
    assert workers.run_workers(["--methods", "lora", "--tasks", "quick"], 4) == 0
    assert [argv[argv.index("--device") + 1] for argv, _ in started] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert all(argv[argv.index("--workers") + 1] == "1" and "--resume" in argv for argv, _ in started)
    assert {env["OMP_NUM_THREADS"] for _, env in started} == {"4"}  # the cores shared out too


def test_a_worker_without_device_takes_the_gpu_its_local_rank_names():
    assert str(pick_device(None, gpus=0)) == "cpu"
    assert str(pick_device(None, gpus=8, local_rank="3")) == "cuda:3"
    assert str(pick_device(None, gpus=2, local_rank="3")) == "cuda:1"
    assert str(pick_device("cuda:1", gpus=2)) == "cuda:1"
    with pytest.raises(Exception, match="has 0 GPU"):
        pick_device("cuda", gpus=0)


@pytest.mark.slow  # two worker processes
def test_two_workers_run_every_unit_once(tmp_path, capsys):
    store = str(tmp_path / "r.db")
    argv = tiny_run("lora,linear", "--workers", "2", trials=4, seeds=2, store=store)
    assert main(argv) == 0
    records = Store(store).records()
    assert len(records) == 12 and len({r["spec_key"] for r in records}) == 12
    assert len({r["env"]["worker"] for r in records}) == 2  # both worked
    assert "12 run(s) recorded" in capsys.readouterr().out
    # every worker's records name the command the user typed, and one start
    assert {r["env"]["command"] for r in records} == {shlex.join(["peftbench", *argv])}
    assert len({r["env"]["started"] for r in records}) == 1 and "PEFTBENCH_COMMAND" not in os.environ
    # the trials sampled and pruned what one worker's would: the same configuration in every slot
    alone = str(tmp_path / "alone.db")
    assert main(tiny_run("lora,linear", "--workers", "1", trials=4, seeds=2, store=alone)) == 0

    def trials(path):
        return sorted((r["method"], r["details"]["slot"], json.dumps(r["hparams"], sort_keys=True), r["status"])
                      for r in Store(path).records() if r["phase"] == "tune")

    assert trials(store) == trials(alone)


@pytest.mark.slow  # worker processes, interrupted and resumed
def test_ctrl_c_stops_every_worker_and_loses_nothing(tmp_path, start_cli):
    store = str(tmp_path / "r.db")
    parent = start_cli(*tiny_run("lora", "--workers", "2", seeds=6, store=store))
    deadline = time.time() + 300
    while not (Store(store).records() if (tmp_path / "r.db").exists() else []):
        assert parent.poll() is None and time.time() < deadline
        time.sleep(0.2)
    parent.send_signal(signal.SIGINT)  # to the parent alone: it passes it on
    out, err = parent.communicate(timeout=120)
    assert parent.returncode == 130 and "--resume" in err
    with sqlite3.connect(store) as conn:
        assert conn.execute("select count(*) from claims").fetchone()[0] == 0
    done = {r["seed"] for r in Store(store).records()}
    assert 1 <= len(done) < 6
    assert main(tiny_run("lora", "--resume", seeds=6, store=store)) == 0
    assert sorted(r["seed"] for r in Store(store).records()) == list(range(6))


def test_a_task_s_trials_all_come_before_its_final_runs():
    """So parallel workers find the finals ready together and end together, not one running the
    last cell's final alone."""
    from peftbench.runner import RunOptions, Sweep

    options = RunOptions(backbone="tiny-vit", image_size=32, trials=2, seeds=2, fractions=(0.5, 1.0), progress=False)
    units = Sweep("lora,linear", "quick", options).plan().units()
    groups = [(u.cell.task.id, u.cell.fraction) for u in units]
    assert len(units) == 2 * 2 * 2 * 4 and len({u.key for u in units}) == len(units)
    runs = [group for group, _ in itertools.groupby(groups)]
    assert len(runs) == len(set(runs)) == 4  # each (task, fraction) in one stretch
    for group in runs:
        phases = [u.phase.value for u, g in zip(units, groups) if g == group]
        assert phases == ["tune"] * 4 + ["final"] * 4  # both methods' trials, then both methods' finals
