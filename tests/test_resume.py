"""A sweep killed with SIGKILL mid-run resumes to exactly the records of an uninterrupted one."""

import json
import os
import signal
import sqlite3
import time

import pytest
from conftest import tiny_run

from peftbench.store import Store

pytestmark = pytest.mark.slow  # three sweeps in subprocesses, one killed and resumed

SWEEP = tiny_run("lora,linear", epochs=2, trials=2, seeds=2)
UNITS = 2 * (2 + 2)  # methods x (trials + seeds)


def count(path, table):
    if not os.path.exists(path):
        return 0
    with sqlite3.connect(path, timeout=30) as conn:
        try:
            return conn.execute(f"select count(*) from {table}").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            return 0


def outcome(path) -> dict:
    """What a sweep found, without what differs between processes: ids, times, speeds, workers,
    file names, the seconds each part took and Optuna's trial numbers (a killed trial takes one)."""
    found = {}
    for r in Store(path).records():
        details = {k: v for k, v in r["details"].items() if k not in ("trial", "trained_tensors", "seconds")}
        found[r["spec_key"]] = (r["phase"], r["method"], r["seed"], r["status"], r["hparams"], r["val_metric"],
                                r["test_metric"], r["trainable_params"], json.dumps(details, sort_keys=True))
    return found


def test_a_sweep_killed_mid_run_resumes_to_the_records_of_an_uninterrupted_one(tmp_path, start_cli):
    whole, killed = str(tmp_path / "whole.db"), str(tmp_path / "killed.db")
    reference = start_cli(*SWEEP, "--store", whole)
    victim = start_cli(*SWEEP, "--store", killed)
    deadline = time.time() + 600
    while not (count(killed, "runs") >= 1 and count(killed, "claims") == 1):  # recorded one, running the next
        assert victim.poll() is None, victim.communicate()[1]
        assert time.time() < deadline, "the sweep never got going"
        time.sleep(0.1)
    # at once: a claim is held for the whole run, and a tiny run on free cores can end within a second
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    interrupted = count(killed, "runs")
    assert 1 <= interrupted < UNITS and count(killed, "claims") == 1  # the run it was in left its claim

    resumed = start_cli(*SWEEP, "--store", killed, "--resume")
    out, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err
    assert f"{UNITS - interrupted} run(s) recorded" in out  # the finished ones were not repeated
    assert reference.wait(timeout=900) == 0, reference.communicate()[1]

    assert outcome(killed) == outcome(whole)
    keys = [r["spec_key"] for r in Store(killed).records()]
    assert len(keys) == len(set(keys)) == UNITS
    assert count(killed, "claims") == 0
