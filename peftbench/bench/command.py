"""``peftbench bench``: its options and the command. Importing this module imports no torch, so
the command line builds its parser fast; the measuring modules load torch when they run."""

from __future__ import annotations

import json
from pathlib import Path

from .. import defaults
from ..errors import UsageError
from .overhead import DEFAULT_RUN_TASK


def add_parser(subparsers) -> None:
    bench = subparsers.add_parser("bench", help="training and inference speed and memory of methods, as ratios")
    bench.add_argument("--backbone", default="dinov2-s", help="backbone to measure on (default dinov2-s)")
    bench.add_argument("--methods", default=defaults.BENCH_METHODS,
                       help=f"methods, optionally sized as name[r=8] (default {defaults.BENCH_METHODS}; "
                            f"{defaults.BENCH_REFERENCE}, the reference of the ratios, is always added)")
    bench.add_argument("--budget", default=defaults.BUDGET,
                       help=f"trainable-parameter budget (default {defaults.BUDGET})")
    bench.add_argument("--batch-size", type=int, default=32, help="samples per step (default 32)")
    bench.add_argument("--image-size", type=int, default=56, help="image backbones: pixels (default 56)")
    bench.add_argument("--seq-len", type=int, default=64, help="language models: tokens per sequence (default 64)")
    bench.add_argument("--steps", type=int, default=5, help="measured steps, the median is reported (default 5)")
    bench.add_argument("--warmup", type=int, default=2, help="steps run first and discarded (default 2)")
    bench.add_argument("--infer-steps", type=int, help="measured inference batches (default: twice --steps)")
    bench.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    bench.add_argument("--run-task", help=f"task of the harness-overhead run (default {DEFAULT_RUN_TASK} "
                                          "for image backbones; none for language models)")
    bench.add_argument("--run-options", default="",
                       help="that run's own options, as peftbench run takes them: --epochs, --max-train-examples, "
                            "--max-eval-examples, --targets, --data-root (e.g. '--epochs 1')")
    bench.add_argument("--no-run-overhead", action="store_true", help="skip the harness-overhead run")
    bench.add_argument("--json", help="write the results as JSON to this file")


def cmd_bench(args) -> int:
    import torch

    from .benchmark import run_bench
    from .report import format_report

    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.image_size < 1:
        raise UsageError(f"--image-size must be positive, got {args.image_size}")
    result = run_bench(args.backbone, methods=args.methods, budget=args.budget, batch_size=args.batch_size,
                       image_size=args.image_size, seq_len=args.seq_len, steps=args.steps, warmup=args.warmup,
                       infer_steps=args.infer_steps, run_task=args.run_task, run_options=args.run_options,
                       run_overhead=not args.no_run_overhead, log=lambda text: print(text, flush=True))
    print(format_report(result))
    if args.json:
        path = Path(args.json)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=2) + "\n")
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from exc
        print(f"\nwritten to {path}")
    return 0
