"""The main comparison as a user runs it, timed: ``peftbench run --methods hora,lora --tasks quick``
with the default workers (auto) and with ``--workers 1``, one after the other on the same machine,
each into a fresh store. Per setting: the wall time, runs per minute, every run's test accuracy,
and where the runs spent their time outside training (the records' ``details["seconds"]``).

    python benchmarks/main_comparison.py --json benchmarks/results/main-comparison-cpu.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from peftbench.store import Store  # noqa: E402

COMMAND = ["run", "--methods", "hora,lora", "--tasks", "quick", "--no-progress"]


def timed_sweep(workers: str | None, tmp: Path, extra: list[str]) -> dict:
    store = tmp / f"workers-{workers or 'default'}" / "results.db"
    argv = [sys.executable, "-m", "peftbench.cli", *COMMAND, *extra, "--store", str(store)]
    if workers is not None:
        argv += ["--workers", workers]
    start = time.perf_counter()
    printed = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True).stdout
    wall = time.perf_counter() - start
    records = Store(str(store)).records()
    parts = defaultdict(float)
    for r in records:
        for part, seconds in (r["details"].get("seconds") or {}).items():
            parts[part] += seconds
    return {
        "workers": workers or "default (auto)", "wall_s": wall, "runs": len(records),
        "runs_per_minute": 60 * len(records) / wall,
        "train_s": sum(r["train_seconds"] or 0 for r in records), "outside_training_s": dict(parts),
        "test_accuracy": {f"{r['task']} {r['method']} seed {r['seed']}": r["test_metric"]
                          for r in records if r["phase"] == "final"},
        "commit": records[0]["env"].get("git_commit") if records else None,
        "printed": printed,  # what the command printed on standard output: its table of runs
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/main_comparison.py", allow_abbrev=False)
    parser.add_argument("--settings", default="default,1", help="worker settings in order: default, N or auto")
    parser.add_argument("--extra", default="", help="more arguments for peftbench run, e.g. '--precision bf16'")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings.split(","):
            result = timed_sweep(None if setting == "default" else setting, Path(tmp), args.extra.split())
            results.append(result)
            print(f"workers {result['workers']}: {result['wall_s']:.0f} s for {result['runs']} runs "
                  f"({result['runs_per_minute']:.2f} per minute), training {result['train_s']:.0f} s of it "
                  f"(summed over workers); outside training: "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in result["outside_training_s"].items()), flush=True)
    if len(results) > 1:
        print(f"runs per minute, {results[0]['workers']} / {results[1]['workers']}: "
              f"{results[0]['runs_per_minute'] / results[1]['runs_per_minute']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": "peftbench " + " ".join(COMMAND + args.extra.split()),
                                               "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
