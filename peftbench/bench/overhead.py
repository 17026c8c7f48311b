"""The harness's own overhead: the wall time of a real sweep of one run against what its steps cost.

The run goes through the sweep API (``peftbench.runner.run_sweep``), as ``peftbench run`` does:
planning, the store, the claim, training, evaluation and the record all count.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import math
import shlex
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .contenders import Contender
from .measure import measure_inference, repeat_steps
from .workload import Workload

if TYPE_CHECKING:
    import torch

    from ..records import RunRecord

DEFAULT_RUN_TASK = "quick/digits"


class _OptionsParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"--run-options: {message}")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an int") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' must be positive")
    return value


def parse_run_options(text: str) -> dict:
    """``--run-options '--epochs 1'`` as RunOptions fields. Only the run's own choices are read here
    (written as ``peftbench run`` writes them); the rest is the benchmark's: its backbone, budget,
    batch and image size, no tuning trials, one seed."""
    parser = _OptionsParser(prog="--run-options", add_help=False, allow_abbrev=False)
    parser.add_argument("--epochs", type=_positive)
    parser.add_argument("--max-train-examples", type=_positive)
    parser.add_argument("--max-eval-examples", type=_positive)
    parser.add_argument("--targets", type=lambda text: tuple(filter(None, (p.strip() for p in text.split(",")))))
    parser.add_argument("--data-root")
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"--run-options: {exc}") from None
    return {k: v for k, v in vars(parser.parse_args(words)).items() if v is not None}


def _eval_batch_size() -> int:
    from ..train import evaluate

    return inspect.signature(evaluate).parameters["batch_size"].default


def task_splits(task_id: str, image_size: int | None, backbone, data_root: str | None):
    """A task's splits, loaded as a run of it on ``backbone`` loads them."""
    from ..plan import suites
    from ..task import resolve_tasks

    [(_, task)] = resolve_tasks(task_id, suites())
    return task.load(image_size, backbone.mean, backbone.std, data_root)


def _eval_examples(task_id: str, record: RunRecord, backbone, data_root: str | None) -> int:
    """Examples the run evaluated: its test split, and its validation split when it scored one."""
    splits = task_splits(task_id, record.settings["image_size"], backbone, data_root)
    cap = record.settings.get("max_eval_examples")
    scored = [splits.test] + ([splits.val] if record.val_metric is not None else [])
    return sum(min(len(s), cap or len(s)) for s in scored)


def _sweep(method: str, task: str, options, tmp: str) -> tuple[RunRecord, float, float]:
    """One final run of ``method`` on ``task`` into a store in ``tmp``: its record, wall time, and the
    part of it spent planning (loading the backbone and the data, sizing the method)."""
    from ..runner import Sweep
    from ..store import Store

    printed = io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            sweep = Sweep(method, task, options)
            sweep.plan()
            planned = time.perf_counter() - start
            records = sweep.run(Store(str(Path(tmp) / "results.db")))
    except Exception as exc:  # noqa: BLE001 - reported with what was measured before it
        raise RuntimeError(f"the sweep of {method} on {task} failed: {type(exc).__name__}: {exc}") from exc
    wall = time.perf_counter() - start
    final = [r for r in records if r.phase == "final"]
    if len(final) != 1 or final[0].status != "ok":
        errors = "; ".join(str(r.error) for r in final if r.error)
        raise RuntimeError(f"the sweep of {method} on {task} did not record one finished run: "
                           f"{errors or printed.getvalue()[-500:]}")
    return final[0], wall, planned


def measure_run(backbone, reference: Contender, workload: Workload, dev: torch.device, task: str,
                budget: str, extra: dict, steps: int, warmup: int) -> dict:
    """Wall time of a real sweep of the reference method on one task against what its steps cost:
    its training steps at the reference's median step time plus its evaluation batches at the
    reference's evaluation speed (measured here at the runner's evaluation batch size)."""
    import torch

    from ..runner import RunOptions

    method = reference.method.name
    with tempfile.TemporaryDirectory() as tmp:
        options = RunOptions(backbone=backbone.name, budget=budget, batch_size=workload.batch_size,
                             image_size=backbone.image_size or None, trials=0, seeds=1, progress=False,
                             adapters_dir=str(Path(tmp) / "adapters"), **extra)
        record, wall, planned = _sweep(method, task, options, tmp)
    shown = {k: ("TMP" + v[len(tmp):] if isinstance(v, str) and v.startswith(tmp) else v)
             for k, v in asdict(options).items() if v != getattr(RunOptions, k, None)}
    epochs, batch = record.settings["epochs"], record.settings["batch_size"]
    n_train = round(record.train_seconds * record.train_samples_per_s / epochs)
    n_eval = _eval_examples(task, record, backbone, extra.get("data_root"))
    train_steps = epochs * math.ceil(n_train / batch)
    eval_batch = _eval_batch_size()
    eval_batches = None  # a language model's evaluation batches are the workload's own
    if workload.unit == "images":
        eval_batches = [(torch.randn(eval_batch, *workload.batches[0][0].shape[1:]),)]
    eval_step = statistics.median(measure_inference({method: reference.model}, workload, dev, steps, warmup,
                                                    eval_batches)[method])
    # the reference's steps again, right after the run: the machine's load then is closer to the run's
    after = repeat_steps(reference, workload, dev, steps, warmup)
    step = statistics.median(reference.step_times + after)
    compute = train_steps * step + n_eval / eval_batch * eval_step
    run_eval = n_eval / record.eval_samples_per_s  # the run's own evaluation time
    outside = wall - record.train_seconds - run_eval
    return {
        "task": task, "sweep": {"methods": method, "tasks": task, "options": shown}, "wall_s": wall,
        "train_steps": train_steps, "eval_examples": n_eval, "eval_batch_size": eval_batch,
        "step_s": step, "step_times_after": after, "eval_step_s": eval_step, "compute_s": compute,
        "wall_vs_compute": wall / compute, "overhead": 1 - compute / wall,
        "record": {k: getattr(record, k) for k in ("train_seconds", "train_samples_per_s", "eval_samples_per_s")},
        "train_loop_vs_steps": record.train_seconds / (train_steps * step),
        "outside_loops_s": outside, "outside_loops_share": outside / wall,
        # once per process: the backbone, the data, sizing; per run: setup (copy, adapt, contract
        # checks), merged-speed timing, saving the adapter (execute.Measured.timed)
        "fixed_s": {"plan": planned, **record.details.get("seconds", {})},
    }
