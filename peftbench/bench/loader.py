"""The data loader alone: samples per second from a task's training split, read as a run reads it
(shuffled, batched, decoded in worker processes where ``peftbench.loading`` decides so), beside
the training step's samples per second. Above 1x, loading is not what a run waits for."""

from __future__ import annotations

import time

LOADER_BATCHES = 16


def measure_loader(task_id: str, backbone, batch_size: int, train_samples_per_s: float,
                   data_root: str | None = None, batches: int = LOADER_BATCHES) -> dict:
    import torch

    from ..loading import loader, loader_workers
    from .overhead import task_splits

    train = task_splits(task_id, backbone.image_size or None, backbone, data_root).train
    workers = loader_workers(train)
    batches = min(batches, -(-len(train) // batch_size))
    feed = iter(loader(train, batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)))
    next(feed)  # starts the decoding processes, if any: once per run, not per batch
    seen, start = 0, time.perf_counter()
    for _, batch in zip(range(batches - 1), feed):
        seen += len(batch[0])
    seconds = time.perf_counter() - start
    rate = seen / seconds if seen else float("inf")
    return {"task": task_id, "batch_size": batch_size, "workers": workers, "batches": batches - 1,
            "samples_per_s": rate, "train_samples_per_s": train_samples_per_s,
            "vs_train_step": rate / train_samples_per_s}
