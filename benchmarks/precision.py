"""Does bf16 autocast change the verdict? LoRA and HoRA on the quick suite, fp32 against bf16, same
seeds, through the same sweep API as ``peftbench run``; per method and task the test accuracy
over seeds in each precision, and whether they agree within one standard deviation.

    OMP_NUM_THREADS=2 python benchmarks/precision.py --seeds 3 --json benchmarks/results/precision-quick.json
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from peftbench.runner import RunOptions, run_sweep  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/precision.py", allow_abbrev=False)
    parser.add_argument("--methods", default="lora,hora")
    parser.add_argument("--tasks", default="quick")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=0, help="0: each method's defaults, the same in both")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            start = time.perf_counter()
            options = RunOptions(precision=precision, seeds=args.seeds, trials=args.trials, progress=False)
            records = run_sweep(args.methods, args.tasks, options, store=f"{tmp}/{precision}.db")
            results[precision] = {"wall_s": time.perf_counter() - start, "runs": [
                {"task": f"{r.suite}/{r.task}", "method": r.method, "seed": r.seed, "test": r.test_metric,
                 "train_samples_per_s": r.train_samples_per_s, "status": r.status.value}
                for r in records if r.phase == "final"]}
    rows = []
    cells = sorted({(r["task"], r["method"]) for r in results["fp32"]["runs"]})
    for task, method in cells:
        def tests(precision, task=task, method=method):
            return [r["test"] for r in results[precision]["runs"] if (r["task"], r["method"]) == (task, method)]
        fp32, bf16 = tests("fp32"), tests("bf16")
        std = {name: statistics.stdev(v) if len(v) > 1 else 0.0 for name, v in (("fp32", fp32), ("bf16", bf16))}
        spread = max(std.values())
        gap = abs(statistics.fmean(bf16) - statistics.fmean(fp32))
        rows.append({"task": task, "method": method, "fp32": fp32, "bf16": bf16, "gap": gap, "std": spread,
                     "within_one_std": gap <= spread})
        print(f"{task:<16} {method:<6} fp32 {100 * statistics.fmean(fp32):5.1f} ± {100 * std['fp32']:.1f}   "
              f"bf16 {100 * statistics.fmean(bf16):5.1f} ± {100 * std['bf16']:.1f}   "
              f"gap {100 * gap:.1f} {'<=' if gap <= spread else '>'} one std {100 * spread:.1f}")
    ratio = results["bf16"]["wall_s"] / results["fp32"]["wall_s"]
    print(f"wall time bf16 / fp32: {ratio:.2f} ({results['bf16']['wall_s']:.0f} s / {results['fp32']['wall_s']:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "wall_ratio": ratio, "runs": results}, f, indent=2)
    return 0 if all(row["within_one_std"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
