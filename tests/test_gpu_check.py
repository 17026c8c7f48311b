"""benchmarks/gpu_check.sh runs end to end without a GPU, on a tiny model, so it cannot rot
between the times a GPU is at hand."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a benchmark, a plan and a sweep in subprocesses
def test_the_gpu_check_runs_on_a_cpu_with_a_tiny_model(tmp_path):
    out = tmp_path / "out"
    env = {**cli_env(), "PYTHON": sys.executable, "BACKBONE": "tiny-vit", "SIZE": "32", "EPOCHS": "1",
           "REQUIRE_GPU": "0", "PEFTBENCH_ESTIMATE": "1", "PEFTBENCH_CACHE": str(tmp_path / "cache")}
    env.pop("VTAB_ROOT", None)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    log = (out / "check.log").read_text()
    assert "synthetic VTAB-1K-shaped eurosat" in log and "estimate: " in log and "the run took" in log
    assert json.loads((out / "bench.json").read_text())["settings"]["backbone"] == "tiny-vit"
    summary = log[log.index("method    train/s"):].splitlines()[1:]
    assert sorted(line.split()[0] for line in summary) == ["adapter", "dora", "hora", "linear", "lora", "vera"]
    assert all(line.endswith("(ok)") for line in summary)
    assert (out / "runs.csv").read_text().count("\n") == 7  # a header and six final runs
