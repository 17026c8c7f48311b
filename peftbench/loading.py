"""The DataLoader every loop builds: a split that decodes files does it in worker processes
where that pays, which is beside a GPU; on a CPU the decoding would take the cores the model
trains on, so it stays in the training process (and its cache of decoded images)."""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Subset

from .compute import device

#: decoding processes per training process at most: a few keep a GPU fed with VTAB-sized images
MAX_LOADER_WORKERS = 4
LOADER_WORKERS_ENV = "PEFTBENCH_LOADER_WORKERS"


def decodes(data: Dataset) -> bool:
    """Whether reading an example decodes a file (an image folder), under any subsets."""
    while isinstance(data, Subset):
        data = data.dataset
    return bool(getattr(data, "decodes", False))


def loader_workers(data: Dataset, dev: torch.device | None = None) -> int:
    """How many processes decode ``data``'s files: none on a CPU or for in-memory data, else
    what this process's cores allow beside its own thread (``PEFTBENCH_LOADER_WORKERS`` decides
    where set)."""
    if not decodes(data):
        return 0
    if os.environ.get(LOADER_WORKERS_ENV):
        return int(os.environ[LOADER_WORKERS_ENV])
    if (dev or device()).type != "cuda":
        return 0
    return max(0, min(MAX_LOADER_WORKERS, torch.get_num_threads() - 1))


def loader(data: Dataset, batch_size: int, workers: int | None = None, **kwargs) -> DataLoader:
    """``DataLoader(data, batch_size, **kwargs)`` with ``loader_workers(data)`` decoding processes
    (or ``workers``), kept for all the loader's epochs so their caches of decoded images last."""
    workers = loader_workers(data) if workers is None else workers
    return DataLoader(data, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=workers > 0 and device().type == "cuda", **kwargs)


def shuffled(data: Dataset, batch_size: int, seed: int, epoch_samples: int | None = None, **kwargs) -> DataLoader:
    """Training batches in a seeded random order; each epoch draws at least ``epoch_samples``
    examples (fresh permutations of a small set), so a small fraction still gets its steps.
    Without it, the order ``shuffle=True`` with the same generator gives (the loader draws its
    workers' seed from the generator first, then the sampler its permutations)."""
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(data, num_samples=max(len(data), epoch_samples or 0), generator=generator)
    return loader(data, batch_size, sampler=sampler, generator=generator, **kwargs)
