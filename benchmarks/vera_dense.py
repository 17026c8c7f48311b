"""VeRA's training step and forward with its update formed densely against peft's own forward,
side by side (alternating steps) on one backbone at the default budget.

    python benchmarks/vera_dense.py --backbone dinov2-s --threads 1 --json benchmarks/results/vera-dense-cpu.json
"""

import argparse
import copy
import json
import os
import statistics
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # offline backbones only: a hub call would stall before failing

import torch  # noqa: E402
from peft.tuners.vera.layer import Linear as PeftVeraLinear  # noqa: E402

from peftbench.backbones import load_backbone  # noqa: E402
from peftbench.bench.contenders import Contender  # noqa: E402
from peftbench.bench.measure import measure_inference, measure_training  # noqa: E402
from peftbench.bench.workload import image_workload  # noqa: E402
from peftbench.budget import budget_params, parse_budgets  # noqa: E402
from peftbench.defaults import BUDGET  # noqa: E402
from peftbench.methods.vera import VeRA  # noqa: E402
from peftbench.plan import resolve_methods, size_method  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/vera_dense.py")
    parser.add_argument("--backbone", default="dinov2-s")
    parser.add_argument("--image-size", type=int, default=56)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backbone = load_backbone(args.backbone, args.image_size)
    method, budget = VeRA(), parse_budgets(BUDGET)[0]
    sizing, error = size_method(method, backbone, budget_params(budget, backbone, resolve_methods(budget.method)))
    if error:
        print(f"benchmarks/vera_dense.py: error: {error}", file=sys.stderr)
        return 2
    workload = image_workload(backbone, args.batch_size)
    dense = workload.wrap(method.apply(copy.deepcopy(backbone), sizing.size, method.defaults))
    factored = copy.deepcopy(dense)
    for module in factored.modules():
        if isinstance(module, PeftVeraLinear):
            module.__class__ = PeftVeraLinear  # peft's own forward
    contenders = [Contender("dense", "method", dense), Contender("peft", "method", factored)]
    measure_training(contenders, workload, torch.device("cpu"), args.steps, args.warmup)
    inference = measure_inference({c.label: c.model for c in contenders}, workload, torch.device("cpu"),
                                  args.steps, args.warmup)
    step = {c.label: statistics.median(c.step_times) for c in contenders}
    forward = {label: statistics.median(times) for label, times in inference.items()}
    result = {"backbone": args.backbone, "image_size": args.image_size, "batch_size": args.batch_size,
              "threads": args.threads, "size": sizing.size, "train_step_s": step, "forward_s": forward,
              "train_step_ratio": step["dense"] / step["peft"], "forward_ratio": forward["dense"] / forward["peft"]}
    print(f"vera {sizing.size} on {args.backbone} at {args.image_size} px, batch {args.batch_size}, "
          f"{args.threads} thread(s), medians of {args.steps} alternating steps")
    print(f"training step: dense {step['dense']:.3f} s, peft {step['peft']:.3f} s, "
          f"ratio {result['train_step_ratio']:.2f}")
    print(f"forward:       dense {forward['dense']:.3f} s, peft {forward['peft']:.3f} s, "
          f"ratio {result['forward_ratio']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
