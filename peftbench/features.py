"""Features of a frozen, untouched backbone, computed once per split and process.

A method that trains nothing in the backbone (the linear probe: ``trains_backbone = False``)
trains its head on these instead of running the backbone forward on every example in every epoch;
without augmentation the two are the same computation. Entries are held by the identity of the
backbone and of the split, so trials and seeds of one sweep share them.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import TensorDataset

from .compute import autocast, current_precision, device
from .loading import loader

MAX_ENTRIES = 8  # a sweep's splits for a few tasks; the oldest goes first
_cache: list[tuple[nn.Module, object, str, TensorDataset]] = []


@torch.no_grad()
def frozen_features(encoder: nn.Module, backbone: nn.Module, data, batch_size: int = 128
                    ) -> tuple[TensorDataset, float]:
    """(features and labels of ``data``, seconds spent computing them here: 0 when cached).

    ``encoder`` computes them (a frozen copy of ``backbone``, which names the cache entry)."""
    for module, source, precision, features in _cache:
        if module is backbone and source is data and precision == current_precision():
            return features, 0.0
    start, dev = time.perf_counter(), device()
    encoder.to(dev).eval()
    xs, ys = [], []
    for x, y in loader(data, batch_size):
        with autocast(dev):
            xs.append(encoder(x.to(dev)).float().cpu())
        ys.append(y)
    features = TensorDataset(torch.cat(xs), torch.cat(ys))
    _cache.append((backbone, data, current_precision(), features))
    del _cache[:-MAX_ENTRIES]
    return features, time.perf_counter() - start
