import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub call would stall ~45 s before failing
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # the machine's two cores are shared

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture
def store_path(tmp_path):
    return str(tmp_path / "results.db")


def _cli_env() -> dict:
    # one thread per worker: the machine's two cores are shared, and results stay comparable
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture
def start_cli():
    """Start ``python -m peftbench.cli ARGS`` in a subprocess; every one is ended at teardown."""
    import subprocess
    import sys

    started = []

    def start(*args: str) -> subprocess.Popen:
        started.append(subprocess.Popen([sys.executable, "-m", "peftbench.cli", *args], env=_cli_env(),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()
