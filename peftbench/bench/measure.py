"""Timing and memory of training steps and inference, contenders interleaved.

Training steps run round-robin over the contenders (one step of each, then the next round), and
inference interleaves the models batch by batch, so a machine that slows down part-way slows
every contender alike.
"""

from __future__ import annotations

import contextlib
import functools
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING

from .contenders import Contender
from .workload import Workload

if TYPE_CHECKING:
    import torch
    from torch import nn


# torch is imported inside the functions: the command line builds its parser from this package,
# and `peftbench list` should not wait seconds for torch.
def _no_grad(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)
    return wrapper


def _sync(dev: torch.device) -> None:
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def to_device(batch: tuple, dev: torch.device) -> tuple:
    return tuple(t.to(dev) for t in batch)


def timed(fn, dev: torch.device) -> float:
    _sync(dev)
    start = time.perf_counter()
    fn()
    _sync(dev)
    return time.perf_counter() - start


def train_step(c: Contender, workload: Workload, batch: tuple, dev: torch.device, hooks=None) -> None:
    """One optimisation step as peftbench.train.fit takes it."""
    from ..compute import autocast

    with autocast(dev), hooks if hooks is not None else contextlib.nullcontext():
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

    from ..train import SavedActivations, accounted_peak_mb

    batch = to_device(workload.batches[0], dev)
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


def measure_training(cs: list[Contender], workload: Workload, dev: torch.device, steps: int, warmup: int) -> None:
    """Round-robin steps, ``warmup`` rounds discarded; each contender keeps its step times."""
    batches = [to_device(b, dev) for b in workload.batches]
    for c in cs:
        c.model.to(dev).train()
        c.peak_memory_mb = measure_memory(c, workload, dev)
    for round_ in range(warmup + steps):
        batch = batches[round_ % len(batches)]
        for c in cs:
            seconds = timed(lambda c=c, batch=batch: train_step(c, workload, batch, dev), dev)
            if round_ >= warmup:
                c.step_times.append(seconds)
    for c in cs:
        c.optimizer = None  # the state is not needed any more; free it before inference
        c.model.zero_grad(set_to_none=True)


def precision_steps(c: Contender, workload: Workload, dev: torch.device, steps: int, warmup: int
                    ) -> dict[str, list[float]]:
    """One contender's training steps in fp32 and in bf16 autocast, alternating step by step (what
    ``--precision`` chooses between), with a fresh optimizer."""
    import torch

    from ..compute import precision

    c.optimizer = torch.optim.AdamW([p for p in c.model.parameters() if p.requires_grad], lr=1e-5)
    c.model.train()
    times = {"fp32": [], "bf16": []}
    for i in range(warmup + steps):
        batch = to_device(workload.batches[i % len(workload.batches)], dev)
        for name in times:
            with precision(name):
                seconds = timed(lambda batch=batch: train_step(c, workload, batch, dev), dev)
            if i >= warmup:
                times[name].append(seconds)
    c.optimizer = None
    return times


def repeat_steps(c: Contender, workload: Workload, dev: torch.device, steps: int, warmup: int) -> list[float]:
    """One contender's training steps again, alone, with a fresh optimizer."""
    import torch
    c.optimizer = torch.optim.AdamW([p for p in c.model.parameters() if p.requires_grad], lr=1e-5)
    c.model.train()
    times = []
    for i in range(warmup + steps):
        batch = to_device(workload.batches[i % len(workload.batches)], dev)
        seconds = timed(lambda batch=batch: train_step(c, workload, batch, dev), dev)
        if i >= warmup:
            times.append(seconds)
    c.optimizer = None
    return times


@_no_grad
def measure_inference(models: dict[str, nn.Module], workload: Workload, dev: torch.device,
                      steps: int, warmup: int, batches=None) -> dict[str, list[float]]:
    """Seconds per batch of each model, the models interleaved batch by batch."""
    from ..compute import autocast

    batches = [to_device(b, dev) for b in (batches or workload.batches)]
    times = {name: [] for name in models}
    for m in models.values():
        m.to(dev).eval()
    for round_ in range(warmup + steps):
        batch = batches[round_ % len(batches)]
        for name, m in models.items():
            def forward(m=m, batch=batch):
                with autocast(dev):
                    workload.infer(m, batch)
            seconds = timed(forward, dev)
            if round_ >= warmup:
                times[name].append(seconds)
    return times


@_no_grad
def max_abs_diff(a: nn.Module, b: nn.Module, workload: Workload, dev: torch.device) -> float:
    batch = to_device(workload.batches[0], dev)
    a.eval(), b.eval()
    return (workload.infer(a, batch).float() - workload.infer(b, batch).float()).abs().max().item()
