"""Speed and memory of the methods side by side, against the physical floor.

Everything is measured in one process on the same batches. Training steps run round-robin over
the methods (one step of each, then the next round), and inference interleaves the unmerged,
merged and base models, so a machine that slows down part-way slows every contender alike; the
medians are then compared as ratios (method / LoRA, method / floor, merged / base), which carry
over between machines where absolute figures do not.

Two reference points bracket the methods:

- ``linear``: the frozen backbone and a trained head, no backward through the backbone at all
  (for a language model, which has no head, just the forward pass and the loss);
- ``floor``: the same plus a backward pass through every block's activations with no weight
  gradient, what any method with an adapter in the first block must at least pay. The first
  block's input is made to require grad, which makes autograd go all the way down.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import io
import json
import math
import shlex
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from .errors import UsageError
from .merging import merged_copy

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_METHODS = "lora,hora,dora,vera,adapter"
DEFAULT_RUN_TASK = "quick/digits"
NUM_CLASSES = 10  # head width of the image workload; any value times the same
#: limits the benchmark checks: ratios of median step times, and the harness's share of a run
TARGETS = {"hora_vs_lora": 1.10, "lora_vs_floor": 1.15, "merged_vs_base": 1.03, "run_overhead": 0.05}


# torch is imported inside the functions: the command line builds its parser from this module, and
# `peftbench list` should not wait seconds for torch.
def _no_grad(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)
    return wrapper


# ---- the workload: batches, loss and inference of one backbone ------------------------------

@dataclass
class Workload:
    batches: list[tuple]
    batch_size: int
    unit: str  # what one sample is: "images" or "sequences"
    loss: Callable[[nn.Module, tuple], torch.Tensor]
    infer: Callable[[nn.Module, tuple], torch.Tensor]
    wrap: Callable[[nn.Module], nn.Module]  # adapted backbone module -> the model that trains


def image_workload(backbone, batch_size: int, n_batches: int = 2, seed: int = 0) -> Workload:
    import torch

    from .train import Classifier, _classification_loss

    g = torch.Generator().manual_seed(seed)
    size = backbone.image_size
    batches = [(torch.randn(batch_size, 3, size, size, generator=g),
                torch.randint(0, NUM_CLASSES, (batch_size,), generator=g)) for _ in range(n_batches)]

    def wrap(module):
        torch.manual_seed(seed)  # the same head for every method
        return Classifier(module, backbone.feature_dim, NUM_CLASSES)

    return Workload(batches, batch_size, "images", _classification_loss, lambda m, b: m(b[0]), wrap)


def text_workload(backbone, batch_size: int, seq_len: int, n_batches: int = 2, seed: int = 0) -> Workload:
    import torch

    from .lm import IGNORE, _response_loss

    g = torch.Generator().manual_seed(seed)
    vocab = backbone.module.config.vocab_size
    batches = []
    for _ in range(n_batches):
        ids = torch.randint(0, vocab, (batch_size, seq_len), generator=g)
        labels = ids.clone()
        labels[:, : seq_len // 2] = IGNORE  # the loss on the response half, as training does
        batches.append((ids, torch.ones_like(ids), labels))
    return Workload(batches, batch_size, "sequences", lambda m, b: _response_loss(m, *b),
                    lambda m, b: m(input_ids=b[0], attention_mask=b[1]).logits, lambda m: m)


# ---- models: methods, the two references, merged copies -------------------------------------

def first_block(module: nn.Module, layout) -> nn.Module:
    """The first transformer block: element 0 of the list of ``num_layers`` blocks holding q."""
    from torch import nn
    for container in module.modules():
        if isinstance(container, (nn.ModuleList, nn.Sequential)) and len(container) == layout.num_layers:
            names = (name for name, _ in container[0].named_modules())
            if any(name == layout.q or name.endswith("." + layout.q) for name in names):
                return container[0]
    raise UsageError(f"cannot find the first of {layout.num_layers} transformer blocks in this backbone")


class InputGrad:
    """Makes a block's input require grad, so backward runs through every block above it.

    The input is detached first: nothing below the block (embeddings) gets a gradient.
    ``inputs`` keeps the last one, to check that it got its gradient.
    """

    def __init__(self, block: nn.Module):
        self.inputs: torch.Tensor | None = None
        self.handle = block.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        import torch
        if not torch.is_grad_enabled():
            return None
        if args:
            self.inputs = args[0].detach().requires_grad_()
            return (self.inputs, *args[1:]), kwargs
        self.inputs = kwargs["hidden_states"].detach().requires_grad_()
        return args, {**kwargs, "hidden_states": self.inputs}


def floor_model(backbone, workload: Workload) -> tuple[nn.Module, InputGrad]:
    module = copy.deepcopy(backbone.module).requires_grad_(False)
    hook = InputGrad(first_block(module, backbone.layout))
    return workload.wrap(module), hook


@dataclass
class Contender:
    label: str
    kind: str  # "method" or "reference"
    model: nn.Module
    method: object | None = None
    size: dict = field(default_factory=dict)
    hook: InputGrad | None = None
    optimizer: torch.optim.Optimizer | None = None
    step_times: list[float] = field(default_factory=list)
    peak_memory_mb: float | None = None
    trainable_params: int = 0

    def __post_init__(self):
        import torch
        from torch import nn
        params = [p for p in self.model.parameters() if p.requires_grad]
        head = getattr(self.model, "head", None)  # counted apart, as the budget is
        self.trainable_params = sum(p.numel() for p in params) - sum(p.numel() for p in head.parameters()) \
            if isinstance(head, nn.Linear) else sum(p.numel() for p in params)
        self.optimizer = torch.optim.AdamW(params, lr=1e-5) if params else None


def parse_methods(spec: str) -> list[tuple[str, dict | None]]:
    """``lora,hora,hora:r=8``: method names, each optionally with an explicit size."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, size = part.partition(":")
        if not size:
            out.append((name, None))
            continue
        try:
            out.append((name, {k: int(v) for k, v in (kv.split("=") for kv in size.split("+"))}))
        except ValueError:
            raise UsageError(f"cannot parse method size '{part}' (use name:r=8)") from None
    if not out:
        raise UsageError("no methods given (--methods lora,hora)")
    return out


def _label(name: str, size: dict) -> str:
    """``lora r=8``: the size's knobs, leaving out a finer knob at zero (``plus1=0``)."""
    return f"{name} {' '.join(f'{k}={v}' for k, v in size.items() if v or k == 'r')}".strip()


def contenders(backbone, workload: Workload, spec: str, budget_text: str) -> tuple[list[Contender], int]:
    """The two references and every method, sized to the budget (or as given), each on its own
    copy of the backbone. LoRA is always there: the ratios refer to it. When HoRA's budget rank
    differs from LoRA's, HoRA is measured at LoRA's rank too (its speed target is at equal rank)."""
    import torch

    from .budget import budget_params, parse_budget, solve
    from .runner import resolve_methods

    wanted = parse_methods(spec)
    if "lora" not in [name for name, _ in wanted]:
        wanted.insert(0, ("lora", None))
    methods = resolve_methods(",".join(dict.fromkeys(name for name, _ in wanted)))
    budget = parse_budget(budget_text)
    target = budget_params(budget, backbone, resolve_methods(budget.method) if budget.method else {})
    sized = []
    for name, size in wanted:
        method = methods[name]
        method.check(backbone)
        if size is not None and set(size) != set(method.knobs):
            raise UsageError(f"{name} takes {', '.join(method.knobs) or 'no size'}, got {', '.join(size)}")
        sized.append((method, size if size is not None else solve(method, backbone, target).size))
    lora_size = next(size for method, size in sized if method.name == "lora")
    hora = [(m, s) for m, s in sized if m.name == "hora"]
    if hora and "r" in lora_size and all(s.get("r") != lora_size["r"] for _, s in hora):
        sized.insert(sized.index(hora[0]) + 1, (hora[0][0], {"r": lora_size["r"]}))

    floor, hook = floor_model(backbone, workload)
    linear = methods.get("linear") or resolve_methods("linear")["linear"]
    probe = workload.wrap(linear.apply(copy.deepcopy(backbone), {}, {}))
    out = [Contender("floor", "reference", floor, hook=hook),
           Contender("linear" if workload.unit == "images" else "forward", "reference", probe)]
    seen = set()
    for method, size in sized:
        label = _label(method.name, size)
        if label in seen:
            continue
        seen.add(label)
        torch.manual_seed(0)
        adapted = method.apply(copy.deepcopy(backbone), size, dict(method.defaults))
        out.append(Contender(label, "method", workload.wrap(adapted), method=method, size=size))
    return out, target


# ---- measuring ------------------------------------------------------------------------------

def _sync(dev: torch.device) -> None:
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def train_step(c: Contender, workload: Workload, batch: tuple, dev: torch.device, hooks=None) -> None:
    """One optimisation step as peftbench.train.fit takes it."""
    from .train import _autocast

    with _autocast(dev), hooks if hooks is not None else contextlib.nullcontext():
        loss = workload.loss(c.model, batch)
    if c.optimizer is not None:
        c.optimizer.zero_grad(set_to_none=True)
    if loss.requires_grad:
        loss.backward()
    if c.optimizer is not None:
        c.optimizer.step()


def measure_memory(c: Contender, workload: Workload, dev: torch.device) -> float:
    """Peak training memory of one step: observed on a GPU, accounted as fit accounts it on a CPU
    (weights, gradients, optimizer state and the activations autograd saves)."""
    import torch

    from .train import SavedActivations, accounted_peak_mb

    batch = _to(workload.batches[0], dev)
    if dev.type == "cuda":
        _sync(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)  # every resident model, this one's weights included
        train_step(c, workload, batch, dev)
        _sync(dev)
        weights = sum(t.numel() * t.element_size() for t in [*c.model.parameters(), *c.model.buffers()])
        return (torch.cuda.max_memory_allocated(dev) - before + weights) / 2**20
    saved = SavedActivations(c.model)
    train_step(c, workload, batch, dev, saved.hooks())
    return accounted_peak_mb(c.model, c.optimizer or SimpleNamespace(state={}), saved.bytes)


def _to(batch: tuple, dev: torch.device) -> tuple:
    return tuple(t.to(dev) for t in batch)


def _timed(fn, dev: torch.device) -> float:
    _sync(dev)
    start = time.perf_counter()
    fn()
    _sync(dev)
    return time.perf_counter() - start


def measure_training(cs: list[Contender], workload: Workload, dev: torch.device, steps: int, warmup: int) -> None:
    """Round-robin steps, ``warmup`` rounds discarded; each contender keeps its step times."""
    batches = [_to(b, dev) for b in workload.batches]
    for c in cs:
        c.model.to(dev).train()
        c.peak_memory_mb = measure_memory(c, workload, dev)
    for round_ in range(warmup + steps):
        batch = batches[round_ % len(batches)]
        for c in cs:
            seconds = _timed(lambda c=c, batch=batch: train_step(c, workload, batch, dev), dev)
            if round_ >= warmup:
                c.step_times.append(seconds)
    for c in cs:
        c.optimizer = None  # the state is not needed any more; free it before inference
        c.model.zero_grad(set_to_none=True)


@_no_grad
def measure_inference(models: dict[str, nn.Module], workload: Workload, dev: torch.device,
                      steps: int, warmup: int, batches=None) -> dict[str, list[float]]:
    """Seconds per batch of each model, the models interleaved batch by batch."""
    from .train import _autocast

    batches = [_to(b, dev) for b in (batches or workload.batches)]
    times = {name: [] for name in models}
    for m in models.values():
        m.to(dev).eval()
    for round_ in range(warmup + steps):
        batch = batches[round_ % len(batches)]
        for name, m in models.items():
            def forward(m=m, batch=batch):
                with _autocast(dev):
                    workload.infer(m, batch)
            seconds = _timed(forward, dev)
            if round_ >= warmup:
                times[name].append(seconds)
    return times


@_no_grad
def max_abs_diff(a: nn.Module, b: nn.Module, workload: Workload, dev: torch.device) -> float:
    batch = _to(workload.batches[0], dev)
    a.eval(), b.eval()
    return (workload.infer(a, batch).float() - workload.infer(b, batch).float()).abs().max().item()


# ---- the harness's own overhead -------------------------------------------------------------

def _run_accepts(option: str) -> bool:
    from .cli import build_parser

    parser = build_parser()
    run = next(a for a in parser._subparsers._group_actions if a.dest == "command").choices["run"]
    return any(option in action.option_strings for action in run._actions)


def _eval_batch_size() -> int:
    from .train import evaluate

    return inspect.signature(evaluate).parameters["batch_size"].default


def measure_run(backbone, lora: Contender, workload: Workload, dev: torch.device, task: str,
                budget: str, extra: list[str], steps: int, warmup: int) -> dict:
    """Wall time of a real ``peftbench run`` of LoRA on one task against what its steps cost:
    its training steps at LoRA's median step time plus its evaluation batches at LoRA's
    evaluation speed (measured here at the runner's evaluation batch size)."""
    import torch

    from .cli import main
    from .store import Store

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["run", "--methods", "lora", "--tasks", task, "--backbone", backbone.name, "--budget", budget,
                "--batch-size", str(workload.batch_size), "--no-progress", "--out", tmp,
                "--store", str(Path(tmp) / "results.db")]
        if backbone.image_size:
            argv += ["--image-size", str(backbone.image_size)]
        if _run_accepts("--trials"):
            argv += ["--trials", "0"]
        argv += extra
        shown = ["peftbench", *("TMP" + a[len(tmp):] if a.startswith(tmp) else a for a in argv)]
        printed = io.StringIO()
        start = time.perf_counter()
        try:
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                code = main(argv)
        except Exception as exc:  # noqa: BLE001 - a failure after the run was stored still leaves its record
            code = f"{type(exc).__name__}: {exc}"
        wall = time.perf_counter() - start
        records = [r for r in Store(str(Path(tmp) / "results.db")).records() if r["phase"] == "final"]
    if len(records) != 1 or records[0]["status"] != "ok":
        raise RuntimeError(f"{' '.join(shown)} did not record one finished run (exit {code}): "
                           f"{printed.getvalue()[-500:]}")
    record = records[0]
    epochs, batch = record["settings"]["epochs"], record["settings"]["batch_size"]
    n_train = round(record["train_seconds"] * record["train_samples_per_s"] / epochs)
    n_eval = _eval_examples(task, record, backbone)
    train_steps = epochs * math.ceil(n_train / batch)
    eval_batch = _eval_batch_size()
    eval_batches = [(torch.randn(eval_batch, *workload.batches[0][0].shape[1:]),)] if workload.unit == "images" else None
    eval_step = statistics.median(measure_inference({"lora": lora.model}, workload, dev, steps, warmup,
                                                    eval_batches)["lora"])
    # LoRA's steps again, right after the run: the machine's load then is closer to the run's
    after = _lora_steps(lora, workload, dev, steps, warmup)
    step = statistics.median(lora.step_times + after)
    compute = train_steps * step + n_eval / eval_batch * eval_step
    run_eval = n_eval / record["eval_samples_per_s"]  # the run's own evaluation time
    outside = wall - record["train_seconds"] - run_eval
    return {
        "task": task, "argv": shown, "exit": code, "wall_s": wall,
        "train_steps": train_steps, "eval_examples": n_eval, "eval_batch_size": eval_batch,
        "step_s": step, "step_times_after": after, "eval_step_s": eval_step, "compute_s": compute,
        "wall_vs_compute": wall / compute, "overhead": 1 - compute / wall,
        "record": {k: record[k] for k in ("train_seconds", "train_samples_per_s", "eval_samples_per_s")},
        "train_loop_vs_steps": record["train_seconds"] / (train_steps * step),
        "outside_loops_s": outside, "outside_loops_share": outside / wall,
    }


def _lora_steps(lora: Contender, workload: Workload, dev: torch.device, steps: int, warmup: int) -> list[float]:
    import torch
    lora.optimizer = torch.optim.AdamW([p for p in lora.model.parameters() if p.requires_grad], lr=1e-5)
    lora.model.train()
    times = []
    for i in range(warmup + steps):
        batch = _to(workload.batches[i % len(workload.batches)], dev)
        seconds = _timed(lambda batch=batch: train_step(lora, workload, batch, dev), dev)
        if i >= warmup:
            times.append(seconds)
    lora.optimizer = None
    return times


def _eval_examples(task_id: str, record: dict, backbone) -> int:
    """Examples the run evaluated: its test split, and its validation split when it scored one."""
    from . import registry
    from .task import resolve_tasks

    settings = record["settings"]
    [(_, task)] = resolve_tasks(task_id, dict(registry.tasks().loaded))
    splits = task.load(settings["image_size"], backbone.mean, backbone.std, None)
    cap = settings.get("max_eval_examples")
    scored = [splits.test] + ([splits.val] if record.get("val_metric") is not None else [])
    return sum(min(len(s), cap or len(s)) for s in scored)


# ---- the whole benchmark --------------------------------------------------------------------

def run_bench(backbone_name: str, methods: str = DEFAULT_METHODS, budget: str = "lora:r=8",
              batch_size: int = 32, image_size: int | None = 56, seq_len: int = 64, steps: int = 5,
              warmup: int = 2, infer_steps: int | None = None, run_task: str | None = None, run_options: str = "",
              run_overhead: bool = True, log=print) -> dict:
    import torch

    from .backbones import load_backbone
    from .envinfo import environment
    from .train import device

    infer_steps = 2 * steps if infer_steps is None else infer_steps
    for name, value in (("--batch-size", batch_size), ("--steps", steps), ("--seq-len", seq_len),
                        ("--infer-steps", infer_steps)):
        if value < 1:
            raise UsageError(f"{name} must be positive, got {value}")
    if warmup < 0:
        raise UsageError(f"--warmup must be 0 or more, got {warmup}")
    backbone = load_backbone(backbone_name, image_size)
    if backbone.modality == "image":
        workload = image_workload(backbone, batch_size)
    else:
        workload = text_workload(backbone, batch_size, seq_len)
    cs, target = contenders(backbone, workload, methods, budget)
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

    overhead = None
    task = run_task or (DEFAULT_RUN_TASK if backbone.modality == "image" else None)
    if run_overhead and task:
        log(f"harness overhead: peftbench run of lora on {task}")
        lora = next(c for c in cs if c.method is not None and c.method.name == "lora")
        try:
            overhead = measure_run(backbone, lora, workload, dev, task, budget, shlex.split(run_options), steps,
                                   warmup)
        except (ImportError, RuntimeError) as exc:  # keep the rest of what was measured
            overhead = {"task": task, "error": f"{type(exc).__name__}: {exc}"}
            log(f"harness overhead not measured: {overhead['error']}")

    settings = {"backbone": backbone.name, "budget": budget, "budget_params": target, "batch_size": batch_size,
                "image_size": backbone.image_size, "seq_len": seq_len if backbone.modality == "text" else None,
                "steps": steps, "warmup": warmup, "infer_steps": infer_steps, "device": str(dev), "threads": torch.get_num_threads()}
    return summarise(settings, measured(cs, workload, inference), overhead, environment())


def measured(cs: list[Contender], workload: Workload, inference: dict) -> list[dict]:
    """One row per contender: its raw step times (kept, so every ratio can be recomputed) and medians."""
    rows = []
    for c in cs:
        row = {"label": c.label, "kind": c.kind, "method": c.method.name if c.method else c.label,
               "size": c.size, "trainable_params": c.trainable_params, "peak_memory_mb": c.peak_memory_mb,
               "train_step_times": c.step_times}
        times = inference.get(c.label, {})
        row["merged_max_abs_diff"] = times.get("merged_max_abs_diff")
        for variant in ("unmerged", "merged", "base"):
            row[f"infer_{variant}_times"] = times.get(variant)
        rows.append(row)
    return rows


def paired_ratio(times: list[float] | None, reference: list[float] | None) -> float | None:
    """Median over rounds of time / the reference's time in the same round: the two ran back to back, so
    a machine that is busier in one round than in another slows both and the ratio holds."""
    if not times or not reference:
        return None
    return statistics.median(t / r for t, r in zip(times, reference))


def summarise(settings: dict, rows: list[dict], overhead: dict | None, env: dict | None = None) -> dict:
    """Medians, throughputs and ratios from the measured times, and the targets they are held to."""
    batch = settings["batch_size"]
    lora = next(row for row in rows if row["method"] == "lora")
    floor = next(row for row in rows if row["label"] == "floor")
    for row in rows:
        step = statistics.median(row["train_step_times"])
        row.update(train_step_s=step, train_samples_per_s=batch / step,
                   step_vs_lora=paired_ratio(row["train_step_times"], lora["train_step_times"]),
                   step_vs_floor=paired_ratio(row["train_step_times"], floor["train_step_times"]),
                   memory_vs_lora=row["peak_memory_mb"] / lora["peak_memory_mb"])
        for variant in ("unmerged", "merged", "base"):
            times = row[f"infer_{variant}_times"]
            row[f"infer_{variant}_samples_per_s"] = batch / statistics.median(times) if times else None
        row["unmerged_vs_base"] = paired_ratio(row["infer_unmerged_times"], row["infer_base_times"])
        row["merged_vs_base"] = paired_ratio(row["infer_merged_times"], row["infer_base_times"])

    targets = []
    same_rank = [r for r in rows if r["method"] == "hora" and r["size"] == {"r": lora["size"].get("r")}]
    for row in same_rank or [r for r in rows if r["method"] == "hora"][:1]:
        targets.append(_target(f"{row['label']} / {lora['label']} train step", row["step_vs_lora"],
                               TARGETS["hora_vs_lora"]))
    targets.append(_target(f"{lora['label']} / floor train step", lora["step_vs_floor"], TARGETS["lora_vs_floor"]))
    for row in rows:
        if row["merged_vs_base"] is not None:
            targets.append(_target(f"{row['label']} merged / base inference", row["merged_vs_base"],
                                   TARGETS["merged_vs_base"]))
    if overhead is not None and "error" not in overhead:
        targets.append(_target("harness share of run wall time", overhead["overhead"], TARGETS["run_overhead"]))
    return {"settings": settings, "rows": rows, "run_overhead": overhead, "targets": targets, "env": env or {}}


def _target(name: str, value: float, limit: float) -> dict:
    return {"name": name, "value": value, "limit": limit, "met": value <= limit}


# ---- command line ---------------------------------------------------------------------------

def format_report(result: dict) -> str:
    s = result["settings"]
    shape = f"{s['image_size']} px" if s["image_size"] else f"{s['seq_len']} tokens"
    title = (f"bench {s['backbone']}: {shape}, batch {s['batch_size']}, budget {s['budget']} = "
             f"{s['budget_params']:,} parameters, median of {s['steps']} training steps and {s['infer_steps']} "
             f"inference batches after {s['warmup']} warm-up, {s['device']}, {s['threads']} thread(s)")
    lines = [title, ""]
    header = ("method", "trainable", "step ms", "samples/s", "/lora", "/floor", "peak MB", "mem/lora",
              "infer/s", "merged/s", "unmerged/base", "merged/base")
    table = [header]

    def f(value, spec):
        return "-" if value is None else format(value, spec)

    for r in result["rows"]:
        table.append((r["label"] + (" (ref)" if r["kind"] == "reference" else ""), f"{r['trainable_params']:,}",
                      f(1000 * r["train_step_s"], ".0f"), f(r["train_samples_per_s"], ".1f"),
                      f(r["step_vs_lora"], ".2f"), f(r["step_vs_floor"], ".2f"), f(r["peak_memory_mb"], ".0f"),
                      f(r["memory_vs_lora"], ".2f"), f(r["infer_unmerged_samples_per_s"], ".1f"),
                      f(r["infer_merged_samples_per_s"], ".1f"), f(r["unmerged_vs_base"], ".3f"),
                      f(r["merged_vs_base"], ".3f")))
    lines += _columns(table)
    o = result["run_overhead"]
    if o and "error" in o:
        lines += ["", f"harness overhead not measured: {o['error']}"]
    elif o:
        lines += ["", (f"peftbench run of lora on {o['task']}: {o['wall_s']:.1f} s wall against "
                       f"{o['compute_s']:.1f} s of steps ({o['train_steps']} training steps, {o['eval_examples']} "
                       f"evaluated examples): run wall / step time {o['wall_vs_compute']:.3f}; its training loop "
                       f"/ its steps {o['train_loop_vs_steps']:.3f}; outside its training and evaluation loops "
                       f"{o['outside_loops_s']:.1f} s ({o['outside_loops_share']:.1%} of the wall time)")]
    lines += ["", "targets:"]
    lines += _columns([(t["name"], f"{t['value']:.3f}", f"<= {t['limit']:.2f}", "met" if t["met"] else "MISSED")
                       for t in result["targets"]])
    return "\n".join(lines)


def _columns(rows) -> list[str]:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]


def add_parser(subparsers) -> None:
    bench = subparsers.add_parser("bench", help="training and inference speed and memory of methods, as ratios")
    bench.add_argument("--backbone", default="dinov2-s", help="backbone to measure on (default dinov2-s)")
    bench.add_argument("--methods", default=DEFAULT_METHODS,
                       help=f"methods, optionally sized as name:r=8 (default {DEFAULT_METHODS}; lora is always added)")
    bench.add_argument("--budget", default="lora:r=8", help="trainable-parameter budget (default lora:r=8)")
    bench.add_argument("--batch-size", type=int, default=32, help="samples per step (default 32)")
    bench.add_argument("--image-size", type=int, default=56, help="image backbones: pixels (default 56)")
    bench.add_argument("--seq-len", type=int, default=64, help="language models: tokens per sequence (default 64)")
    bench.add_argument("--steps", type=int, default=5, help="measured steps, the median is reported (default 5)")
    bench.add_argument("--warmup", type=int, default=2, help="steps run first and discarded (default 2)")
    bench.add_argument("--infer-steps", type=int, help="measured inference batches (default: twice --steps)")
    bench.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    bench.add_argument("--run-task", help=f"task of the harness-overhead run (default {DEFAULT_RUN_TASK} "
                                          "for image backbones; none for language models)")
    bench.add_argument("--run-options", default="", help="extra options for that run, e.g. '--epochs 1'")
    bench.add_argument("--no-run-overhead", action="store_true", help="skip the harness-overhead run")
    bench.add_argument("--json", help="write the results as JSON to this file")


def cmd_bench(args) -> int:
    import torch
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


def markdown(result: dict) -> str:
    """The measured table and the targets as markdown (for READMEs)."""
    def f(value, spec):
        return "–" if value is None else format(value, spec)

    header = ("| method | trainable | step ms | samples/s | / LoRA | / floor | peak MB | infer/s | merged/s "
              "| unmerged / base | merged / base |")
    rows = [header, "|" + "---|" * 11]
    for r in result["rows"]:
        label = f"{r['label']} (reference)" if r["kind"] == "reference" else r["label"]
        rows.append(f"| {label} | {r['trainable_params']:,} | {1000 * r['train_step_s']:.0f} | "
                    f"{r['train_samples_per_s']:.1f} | {r['step_vs_lora']:.2f} | {r['step_vs_floor']:.2f} | "
                    f"{r['peak_memory_mb']:.0f} | {f(r['infer_unmerged_samples_per_s'], '.1f')} | "
                    f"{f(r['infer_merged_samples_per_s'], '.1f')} | {f(r['unmerged_vs_base'], '.3f')} | "
                    f"{f(r['merged_vs_base'], '.3f')} |")
    rows += ["", "| target | measured | limit | |", "|---|---|---|---|"]
    rows += [f"| {t['name']} | {t['value']:.3f} | ≤ {t['limit']:.2f} | {'met' if t['met'] else '**missed**'} |"
             for t in result["targets"]]
    return "\n".join(rows)
