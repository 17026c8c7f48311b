"""Three workers share one sweep through a real PostgreSQL server, and none runs a unit twice,
even when one of them is killed mid-run (the recipe for several machines, docs/cluster.md).

The server is a throwaway cluster this module starts (Debian's ``postgresql`` package, which
``make postgres`` installs), or the one PEFTBENCH_TEST_POSTGRES_URL names.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections import Counter

import optuna
import pytest
from conftest import tiny_run
from optuna.trial import TrialState
from sqlalchemy import create_engine, func, inspect, select, text

from peftbench import tuning
from peftbench.store import Store, claims

pytestmark = pytest.mark.slow  # a PostgreSQL server and three workers in subprocesses

SWEEP = tiny_run("lora,linear", "--resume", epochs=2, trials=3, seeds=2)


def server_binaries() -> str | None:
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)  # the newest version first
    found = shutil.which("pg_ctl") or next(iter(installed), None)
    return os.path.dirname(found) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    if os.environ.get("PEFTBENCH_TEST_POSTGRES_URL"):
        yield os.environ["PEFTBENCH_TEST_POSTGRES_URL"]
        return
    bindir = server_binaries()
    if bindir is None:
        message = "PostgreSQL is not installed (make postgres)"
        pytest.fail(message) if os.environ.get("PEFTBENCH_REQUIRE_POSTGRES") else pytest.skip(message)
    home = tempfile.mkdtemp(prefix="peftbench-pg-")
    as_server = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(home, "postgres")
        as_server = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(home, "data"), free_port()
    subprocess.run([*as_server, f"{bindir}/initdb", "-D", data, "-U", "peftbench", "--auth=trust"],
                   check=True, capture_output=True)
    subprocess.run([*as_server, f"{bindir}/pg_ctl", "-D", data, "-l", f"{home}/log", "-w", "-o",
                    f"-p {port} -k {home} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://peftbench@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_server, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_three_workers_share_one_sweep_and_run_nothing_twice(postgres_url, start_cli):
    workers = [start_cli(*SWEEP, "--store", postgres_url) for _ in range(3)]
    for worker in workers:
        out, err = worker.communicate(timeout=900)
        assert worker.returncode == 0, err

    records = Store(postgres_url).records()
    keys = [r["spec_key"] for r in records]
    assert len(keys) == len(set(keys)) == 2 * (3 + 2)  # methods x (trials + seeds), each once
    assert Counter((r["method"], r["phase"]) for r in records) == {
        ("lora", "tune"): 3, ("lora", "final"): 2, ("linear", "tune"): 3, ("linear", "final"): 2}
    assert len({r["env"]["worker"] for r in records}) >= 2  # the work was shared

    storage = tuning.storage(postgres_url)
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        assert len(study.trials) == 3  # no trial asked twice or left behind
        assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    for method in ("lora", "linear"):
        trials = [r for r in records if r["method"] == method and r["phase"] == "tune" and r["status"] == "ok"]
        best = min(trials, key=lambda r: (-r["val_metric"], r["details"]["slot"]))  # earliest of a tie
        assert all(r["hparams"] == best["hparams"] for r in records if r["method"] == method and r["phase"] == "final")
    with Store(postgres_url).engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(claims)).scalar() == 0


@pytest.fixture
def database(postgres_url):
    """A database of the test's own on the server, where the server lets us create one."""
    name = f"peftbench_{uuid.uuid4().hex[:12]}"
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception:  # noqa: BLE001 - no CREATEDB right on a given server: share its database
        yield postgres_url
        return
    finally:
        engine.dispose()
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"


KILLED_SWEEP = tiny_run("lora,linear", "--resume", epochs=3, trials=2, seeds=2)


def claim_owners(engine) -> list[str]:
    with engine.connect() as conn:
        if not inspect(conn).has_table(claims.name):  # no worker has opened the store yet
            return []
        return list(conn.execute(select(claims.c.owner)).scalars())


def test_independent_processes_one_killed_mid_run_record_every_unit_once(database, start_cli):
    """N `peftbench run ... --resume` processes, as a SLURM job array starts them: one is killed
    with SIGKILL while it holds a unit; the others take the unit over and finish the sweep."""
    processes = [start_cli(*KILLED_SWEEP, "--store", database) for _ in range(3)]
    victim, engine = processes[0], create_engine(database)
    deadline = time.time() + 600
    while not any(f":{victim.pid}:" in owner for owner in claim_owners(engine)):  # mid-run
        assert victim.poll() is None, victim.communicate()[1]
        assert time.time() < deadline, "the victim never claimed a unit"
        time.sleep(0.05)
    victim.kill()  # SIGKILL: no claim given back, no trial told
    victim.wait()
    for process in processes[1:]:
        out, err = process.communicate(timeout=900)
        assert process.returncode == 0, err
    late = start_cli(*KILLED_SWEEP, "--store", database)  # a late array task finds the sweep done
    out, err = late.communicate(timeout=900)
    assert late.returncode == 0 and "nothing to run" in out, err

    records = Store(database).records()
    keys = [r["spec_key"] for r in records if r["settings"]["epochs"] == 3]
    assert len(keys) == len(set(keys)) == 2 * (2 + 2)  # methods x (trials + seeds), each exactly once
    assert all(r["status"] == "ok" for r in records if r["spec_key"] in keys)
    assert claim_owners(engine) == []
    engine.dispose()
