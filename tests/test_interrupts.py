"""Out of memory and Ctrl-C: the sweep stops, the store stays consistent, and it says how to go on."""

import signal
import sqlite3
import time

import pytest
import torch
from conftest import add_method, tiny_run

from peftbench.cli import main
from peftbench.methods.linear import Linear
from peftbench.store import Store


class Greedy(Linear):
    """The linear probe, but its second run asks for more memory than there is."""

    name = "greedy"
    calls = 0

    def apply(self, backbone, size, hparams):
        Greedy.calls += 1
        if Greedy.calls == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        return super().apply(backbone, size, hparams)


def claims(path):
    with sqlite3.connect(path) as conn:
        return conn.execute("select count(*) from claims").fetchone()[0]


def test_out_of_memory_stops_the_sweep_records_nothing_half_done_and_says_how_to_resume(tmp_path, monkeypatch,
                                                                                         capsys):
    add_method(monkeypatch, Greedy)
    store = str(tmp_path / "r.db")
    assert main(tiny_run("greedy", seeds=3, store=store)) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "out of memory" in err and "--resume" in err and "batch size 32" in err
    assert [r["seed"] for r in Store(store).records()] == [0]  # the run before; the failed one is not a result
    assert claims(store) == 0
    assert main(tiny_run("greedy", "--resume", seeds=3, store=store)) == 0
    assert sorted(r["seed"] for r in Store(store).records()) == [0, 1, 2]


@pytest.mark.slow  # a sweep in a subprocess, interrupted and resumed
def test_ctrl_c_leaves_the_store_consistent_and_says_how_to_resume(tmp_path, start_cli):
    store = str(tmp_path / "r.db")
    # enough runs that the signal lands mid-sweep however fast the machine: a tiny run takes a second
    sweep = start_cli(*tiny_run("lora", seeds=10, store=store))
    deadline = time.time() + 300
    while not (Store(store).records() if (tmp_path / "r.db").exists() else []):
        assert sweep.poll() is None and time.time() < deadline
        time.sleep(0.2)
    sweep.send_signal(signal.SIGINT)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130
    assert "--resume" in err and "Traceback" not in err
    done = len(Store(store).records())
    assert 1 <= done < 10 and claims(store) == 0  # the interrupted run gave its claim back
    resumed = start_cli(*tiny_run("lora", "--resume", seeds=10, store=store))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert sorted(r["seed"] for r in Store(store).records()) == list(range(10))
