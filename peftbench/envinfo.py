"""What produced a result: package versions, git commit, device, threads, the machine, and the
command that started the sweep with the time it started (``peftbench run`` sets both once, and its
worker processes inherit them: a leaderboard can say what ran, and for how long)."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

PACKAGES = ("peftbench", "torch", "peft", "timm", "transformers", "optuna", "numpy")
COMMAND_ENV, STARTED_ENV = "PEFTBENCH_COMMAND", "PEFTBENCH_STARTED"


@contextmanager
def sweep_marked(command: str):
    """Within: the sweep this process (and the workers it starts) runs is named, with when it started."""
    if STARTED_ENV in os.environ:  # a worker: its parent's
        yield
        return
    os.environ[COMMAND_ENV] = command
    os.environ[STARTED_ENV] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        yield
    finally:
        del os.environ[COMMAND_ENV], os.environ[STARTED_ENV]


def machine() -> dict:
    """Cores and memory: what a wall time was measured on."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory = None
    return {"cores": os.cpu_count(), "memory_gib": round(memory) if memory else None, "system": platform.system()}


def cpu_name() -> str:
    """The processor's model and the vector instructions torch uses on it: two CPUs of one
    architecture and core count can differ several-fold in speed (AVX2 against AVX-512 with AMX)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            names = (line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
            model = next(names, model)
    except OSError:
        pass
    return f"cpu ({model}, {torch.backends.cpu.get_cpu_capability()})"


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@functools.cache
def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment() -> dict:
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu_name()
    return {
        "packages": {name: _version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "device": dev,
        "threads": torch.get_num_threads(),
        "machine": machine(),
        "command": os.environ.get(COMMAND_ENV),
        "started": os.environ.get(STARTED_ENV),
    }
