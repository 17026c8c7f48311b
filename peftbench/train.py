"""The training loop every method shares: AdamW, warm-up then cosine decay, seeded.

It measures what the records report itself: training and evaluation throughput and the
peak memory of training.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .compute import autocast, device
from .loading import loader, shuffled


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class Classifier(nn.Module):
    """An (adapted) encoder and the linear head every method trains."""

    def __init__(self, encoder: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x):
        return self.head(self.encoder(x))

    @classmethod
    def on_features(cls, head: nn.Linear) -> Classifier:
        """The same head, on features computed beforehand (peftbench.features)."""
        model = cls(nn.Identity(), head.in_features, head.out_features)
        model.head = head
        return model


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int
    warmup_fraction: float = 0.1
    head_lr: float | None = None  # the classifier head's own step; None: the same as lr
    epoch_samples: int | None = None  # every epoch draws at least this many examples


@dataclass(frozen=True)
class TrainStats:
    seconds: float
    samples_per_s: float
    peak_memory_mb: float
    final_loss: float


def warmup_cosine(total_steps: int, warmup_fraction: float):
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class SavedActivations:
    """Bytes of the activations autograd keeps for the backward pass, counted once per storage.

    torch's CPU allocator keeps no statistics and the process's resident set does not shrink
    between runs, so on a CPU the training peak is accounted instead of observed: weights,
    gradients, optimizer state and the activations of one step.
    """

    def __init__(self, model: nn.Module):
        self.skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.storages: dict[int, int] = {}

    def pack(self, tensor):
        if tensor.layout is torch.sparse_coo:  # no storage of its own (SHiRA's update): its two parts
            self.pack(tensor._indices())
            self.pack(tensor._values())
            return tensor
        if tensor.layout is not torch.strided:  # other sparse layouts: counted by their values
            self.storages[id(tensor)] = tensor.values().numel() * tensor.element_size()
            return tensor
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.skip:
            self.storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda tensor: tensor)

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))


def accounted_peak_mb(model: nn.Module, optimizer: torch.optim.Optimizer, activations: int) -> float:
    weights = _tensor_bytes(model.parameters())
    grads = _tensor_bytes(p.grad for p in model.parameters() if p.grad is not None)
    state = _tensor_bytes(v for s in optimizer.state.values() for v in s.values())
    return (weights + grads + state + activations) / 2**20


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """The backbone's trainable parameters at ``lr``, a classifier head's at ``head_lr``."""
    head = model.head if isinstance(model, Classifier) else None
    in_head = {id(p) for p in head.parameters()} if head is not None else set()
    groups = [
        {"params": [p for p in model.parameters() if p.requires_grad and id(p) not in in_head], "lr": config.lr},
        {"params": [p for p in head.parameters() if p.requires_grad] if head is not None else [],
         "lr": config.lr if config.head_lr is None else config.head_lr},
    ]
    return [group for group in groups if group["params"]]


def fit(model: nn.Module, batches: DataLoader, batch_loss: Callable[[nn.Module, tuple], torch.Tensor],
        config: TrainConfig, desc: str = "train", progress: bool = True,
        on_epoch: Callable[[int], None] | None = None) -> TrainStats:
    """The optimisation loop every task kind shares.

    ``batch_loss(model, batch)`` returns the loss of one batch (already on the device) and
    ``on_epoch(epoch)`` runs after each epoch (validation for pruning; it may raise to stop).
    """
    dev = device()
    model.to(dev).train()
    optimizer = torch.optim.AdamW(param_groups(model, config), weight_decay=config.weight_decay)
    total = config.epochs * len(batches)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, config.warmup_fraction))
    steps, seen, train_seconds, loss = 0, 0, 0.0, torch.tensor(float("nan"))
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False, dynamic_ncols=True, mininterval=1.0)
    saved = SavedActivations(model)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    try:
        for epoch in range(config.epochs):
            model.train()
            start = time.perf_counter()
            for batch in batches:
                batch = tuple(t.to(dev, non_blocking=True) for t in batch)
                # count the first step's activations on a CPU; the hooks cost time, so only once
                with autocast(dev), saved.hooks() if dev.type == "cpu" and steps == 0 else nullcontext():
                    loss = batch_loss(model, batch)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"loss became {loss.item()} in epoch {epoch + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                steps += 1
                seen += len(batch[0])
                bar.update()
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            train_seconds += time.perf_counter() - start  # validation between epochs is not training
            if on_epoch is not None:
                on_epoch(epoch)
    finally:
        bar.close()
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        peak_mb = accounted_peak_mb(model, optimizer, saved.bytes)
    return TrainStats(train_seconds, seen / max(train_seconds, 1e-9), peak_mb, loss.item())


def _classification_loss(model: nn.Module, batch: tuple) -> torch.Tensor:
    x, y = batch
    logits = model(x).float()
    try:
        return nn.functional.cross_entropy(logits, y)
    except IndexError as exc:  # labels the plan could not read up front (a dataset that decodes them)
        classes = logits.shape[-1]
        raise ValueError(f"{exc} (labels must lie in 0..{classes - 1}: the task's {classes} classes)") from exc


def train(model: Classifier, data: Dataset, config: TrainConfig, desc: str = "train",
          progress: bool = True, on_epoch: Callable[[int], None] | None = None) -> TrainStats:
    batches = shuffled(data, config.batch_size, config.seed, config.epoch_samples)
    return fit(model, batches, _classification_loss, config, desc, progress, on_epoch)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, batch_size: int = 128) -> tuple[float, float, torch.Tensor]:
    """Top-1 accuracy, samples per second, and whether each example was right (in order)."""
    dev = device()
    model.to(dev).eval()
    correct = []
    start = time.perf_counter()
    for x, y in loader(data, batch_size):
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        with autocast(dev):
            correct.append((model(x).argmax(-1) == y).cpu())
    seconds = time.perf_counter() - start
    correct = torch.cat(correct)
    return correct.float().mean().item(), len(correct) / seconds, correct
