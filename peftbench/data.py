"""Small in-memory image sets split the VTAB-1K way, pre-transformed once into tensors."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from .task import Splits

SPLIT_SEED = 0
TRAIN, VAL = 800, 200


def vtab_indices(n: int, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """800 train and 200 val examples drawn at random with a fixed seed; the rest is test."""
    if n <= TRAIN + VAL:
        raise ValueError(f"need more than {TRAIN + VAL} examples for a VTAB-1K split, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    return {"train": order[:TRAIN], "val": order[TRAIN:TRAIN + VAL],
            "trainval": order[:TRAIN + VAL], "test": order[TRAIN + VAL:]}


def to_pixels(images: np.ndarray, image_size: int, mean, std) -> torch.Tensor:
    """[N, H, W] or [N, H, W, 3] arrays scaled to [0, 1] -> normalised [N, 3, S, S] floats."""
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.ndim == 3:
        x = x.unsqueeze(-1).expand(*x.shape, 3)
    x = x.permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(mean).view(1, 3, 1, 1)
    std = torch.tensor(std).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def array_splits(images: np.ndarray, labels: np.ndarray, image_size: int, mean, std) -> Splits:
    """VTAB-1K splits of an in-memory image set (images already scaled to [0, 1])."""
    pixels = to_pixels(images, image_size, mean, std)
    targets = torch.as_tensor(labels, dtype=torch.long)
    parts = {name: TensorDataset(pixels[idx], targets[idx])
             for name, idx in vtab_indices(len(labels)).items()}
    return Splits(**parts)
