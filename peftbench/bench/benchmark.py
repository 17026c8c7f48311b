"""The whole benchmark: build the contenders, time their training and inference in one process on
the same batches, measure the harness's overhead, and summarise."""

from __future__ import annotations

import copy
import statistics

from .. import defaults
from ..errors import UsageError
from .contenders import contenders
from .loader import measure_loader
from .measure import max_abs_diff, measure_inference, measure_training, precision_steps
from .overhead import DEFAULT_RUN_TASK, measure_run, parse_run_options
from .summary import measured, paired_ratio, summarise
from .workload import image_workload, text_workload


def _check(batch_size: int, steps: int, seq_len: int, infer_steps: int, warmup: int) -> None:
    for name, value in (("--batch-size", batch_size), ("--steps", steps), ("--seq-len", seq_len),
                        ("--infer-steps", infer_steps)):
        if value < 1:
            raise UsageError(f"{name} must be positive, got {value}")
    if warmup < 0:
        raise UsageError(f"--warmup must be 0 or more, got {warmup}")


def run_bench(backbone_name: str, methods: str | None = None, budget: str | None = None,
              batch_size: int = 32, image_size: int | None = 56, seq_len: int = 64, steps: int = 5,
              warmup: int = 2, infer_steps: int | None = None, run_task: str | None = None, run_options: str = "",
              run_overhead: bool = True, reference: str | None = None, challenger: str | None = None,
              probe: str | None = None, log=print) -> dict:
    """Everything measured, as a dict ready for JSON. ``methods``, ``budget``, ``reference``,
    ``challenger`` and ``probe`` default to peftbench.defaults (read when called)."""
    import torch

    from ..backbones import load_backbone
    from ..compute import native_bf16
    from ..envinfo import environment
    from ..merging import merged_copy
    from ..train import device

    methods = methods or defaults.BENCH_METHODS
    budget = budget or defaults.BUDGET
    reference = reference or defaults.BENCH_REFERENCE
    challenger = challenger or defaults.BENCH_CHALLENGER
    probe = probe or defaults.PROBE
    infer_steps = 2 * steps if infer_steps is None else infer_steps
    _check(batch_size, steps, seq_len, infer_steps, warmup)
    extra = parse_run_options(run_options)  # bad options fail now, not after the measurements
    backbone = load_backbone(backbone_name, image_size)
    if backbone.modality == "image":
        workload = image_workload(backbone, batch_size)
    else:
        workload = text_workload(backbone, batch_size, seq_len)
    cs, target = contenders(backbone, workload, methods, budget, reference, challenger, probe)
    dev = device()
    log(f"training: {len(cs)} models, {warmup} + {steps} round-robin steps")
    measure_training(cs, workload, dev, steps, warmup)

    base = workload.wrap(copy.deepcopy(backbone.module))
    inference = {}
    for c in cs:
        if c.kind != "method":
            continue
        log(f"inference: {c.label}")
        models = {"unmerged": c.model, "base": base}
        if c.method.mergeable:
            models["merged"] = merged_copy(c.model)
        inference[c.label] = measure_inference(models, workload, dev, infer_steps, warmup)
        if "merged" in models:
            inference[c.label]["merged_max_abs_diff"] = max_abs_diff(c.model, models.pop("merged"), workload, dev)

    ref = next(c for c in cs if c.method is not None and c.method.name == reference)
    bf16 = None
    if native_bf16(dev):
        log(f"precision: {ref.label} in fp32 and bf16, step by step")
        times = precision_steps(ref, workload, dev, steps, warmup)
        bf16 = {"method": ref.label, "fp32_step_s": statistics.median(times["fp32"]),
                "bf16_step_s": statistics.median(times["bf16"]),
                "bf16_vs_fp32": paired_ratio(times["bf16"], times["fp32"]), "times": times}

    overhead = None
    task = run_task or (DEFAULT_RUN_TASK if backbone.modality == "image" else None)
    if run_overhead and task:
        log(f"harness overhead: a sweep of {reference} on {task}")
        try:
            overhead = measure_run(backbone, ref, workload, dev, task, budget, extra, steps, warmup)
        except (ImportError, RuntimeError) as exc:  # keep the rest of what was measured
            overhead = {"task": task, "error": f"{type(exc).__name__}: {exc}"}
            log(f"harness overhead not measured: {overhead['error']}")

    feed = None
    if task and backbone.modality == "image":
        log(f"loader: the training split of {task}")
        try:
            feed = measure_loader(task, backbone, batch_size, batch_size / statistics.median(ref.step_times),
                                  extra.get("data_root"))
        except Exception as exc:  # noqa: BLE001 - keep the rest of what was measured
            feed = {"task": task, "error": f"{type(exc).__name__}: {exc}"}
            log(f"loader not measured: {feed['error']}")

    settings = {"backbone": backbone.name, "budget": budget, "budget_params": target, "batch_size": batch_size,
                "image_size": backbone.image_size, "seq_len": seq_len if backbone.modality == "text" else None,
                "steps": steps, "warmup": warmup, "infer_steps": infer_steps, "device": str(dev),
                "threads": torch.get_num_threads(), "reference": reference, "challenger": challenger, "probe": probe}
    return {**summarise(settings, measured(cs, inference), overhead, environment()), "precision": bf16,
            "loader": feed}
