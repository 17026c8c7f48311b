"""Nested, class-stratified fractions of a training split, for sample-efficiency curves.

One fixed permutation (the split seed) orders every class; a fraction keeps the first
``round(fraction * class size)`` of each (at least one), so the 10% subset contains the 5% one
and every class keeps its share.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Subset, TensorDataset

from .data import SPLIT_SEED, fixed_order
from .errors import UsageError


def parse_fractions(text: str) -> tuple[float, ...]:
    """``0.05,0.1,1`` -> (0.05, 0.1, 1.0); each must lie in (0, 1]."""
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise UsageError(f"--fractions: '{part.strip()}' is not a number (e.g. 0.05,0.1,1.0)") from None
        if not 0 < value <= 1:
            raise UsageError(f"--fractions: {part.strip()} is not in (0, 1]")
        values.append(value)
    return tuple(sorted(set(values)))


def strata(data) -> np.ndarray:
    """Each example's class, without decoding any image; one stratum when there are no classes."""
    if isinstance(data, Subset):
        return strata(data.dataset)[np.asarray(data.indices)]
    if isinstance(data, (list, tuple)):  # multiple-choice examples: the gold option's position
        return np.array([getattr(e, "answer", 0) for e in data])
    if hasattr(data, "items"):  # image lists: (path, label)
        return np.array([label for _, label in data.items])
    labels = data.tensors[-1] if isinstance(data, TensorDataset) else getattr(data, "labels", None)
    if labels is None or torch.is_floating_point(torch.as_tensor(labels)):  # regression targets
        return np.zeros(len(data), dtype=np.int64)
    return torch.as_tensor(labels).reshape(len(data), -1)[:, 0].numpy()


def nested_subset(data, fraction: float, seed: int = SPLIT_SEED):
    if fraction >= 1:
        return data
    labels = strata(data)
    order = fixed_order(len(labels), seed)
    keep = []
    for label in np.unique(labels):
        members = order[labels[order] == label]
        keep += members[:max(1, round(fraction * len(members)))].tolist()
    keep.sort()
    return [data[i] for i in keep] if isinstance(data, (list, tuple)) else Subset(data, keep)
