"""Local workers: ``run --workers N`` starts N processes on this machine that share the sweep's
store through its claims, each with its share of the cores and, where there are GPUs, its own GPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import torch

#: what `--workers auto` starts on a machine without GPUs: on the 2-core machine two single-threaded
#: workers ran the quick sweep faster than one with two threads (benchmarks/README.md)
CPU_CORES_PER_WORKER = 1
MAX_AUTO_CPU_WORKERS = 4  # each holds a copy of the backbone and its data
STOP_GRACE_SECONDS = 30


def auto_workers(gpus: int, cores: int, runs_left: int | None = None) -> int:
    """One worker per GPU, else per core (at most 4), and never one without a run: it would only
    take the others' cores."""
    workers = gpus or max(1, min(MAX_AUTO_CPU_WORKERS, cores // CPU_CORES_PER_WORKER))
    return max(1, min(workers, runs_left)) if runs_left is not None else workers


def devices(n: int, gpus: int) -> list[str]:
    """Worker i's device: GPU i (round robin when there are fewer GPUs), else the CPU."""
    return [f"cuda:{i % gpus}" if gpus else "cpu" for i in range(n)]


def threads(n: int, cores: int) -> int:
    return max(1, cores // n)


def run_workers(argv: list[str], n: int) -> int:
    """Run ``peftbench run ARGV`` in n worker processes; the highest exit code wins. Ctrl-C stops them
    all (each gives its unfinished unit back, so nothing finished is lost)."""
    gpus, cores = torch.cuda.device_count(), os.cpu_count() or 1
    env = {**os.environ, "OMP_NUM_THREADS": str(threads(n, cores)), "MKL_NUM_THREADS": str(threads(n, cores))}
    children = [subprocess.Popen([sys.executable, "-m", "peftbench.cli", "run", *argv, "--workers", "1", "--resume",
                                  "--no-progress", "--device", device], env=env, stdout=subprocess.DEVNULL)
                for device in devices(n, gpus)]
    try:
        return max(child.wait() for child in children)
    except KeyboardInterrupt:
        for child in children:  # a Ctrl-C in the terminal reached them already; a signal to us alone did not
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
        raise
