"""In-memory image sets split the VTAB-1K way: small ones pre-transformed once into tensors,
large ones kept as stored and transformed per item (same transform, far less memory)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import UsageError
from .task import Splits

if TYPE_CHECKING:  # torch is imported where tensors are made: task plugins load without it
    import torch

SPLIT_SEED = 0
TRAIN, VAL = 800, 200


def fixed_order(n: int, seed: int = SPLIT_SEED) -> np.ndarray:
    """The one seeded permutation every split, hold-out and fraction is cut from."""
    return np.random.default_rng(seed).permutation(n)


def vtab_indices(n: int, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """800 train and 200 val examples drawn at random with a fixed seed; the rest is test."""
    if n <= TRAIN + VAL:
        raise UsageError(f"need more than {TRAIN + VAL} examples for a VTAB-1K split, got {n}")
    order = fixed_order(n, seed)
    return {"train": order[:TRAIN], "val": order[TRAIN:TRAIN + VAL],
            "trainval": order[:TRAIN + VAL], "test": order[TRAIN + VAL:]}


def scaled_vtab_indices(n: int, trainval_fraction: float = 0.6, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """VTAB-1K's shape for sets too small for 1,000 training examples: ``trainval_fraction`` of
    them (rounded) for train+val in VTAB's 4:1 ratio (800:200), the rest as test."""
    trainval = round(n * trainval_fraction)
    train = trainval * TRAIN // (TRAIN + VAL)
    if not 0 < train < trainval < n:
        raise ValueError(f"{n} examples are too few to split {trainval_fraction:.0%} for train+val")
    order = fixed_order(n, seed)
    return {"train": order[:train], "val": order[train:trainval],
            "trainval": order[:trainval], "test": order[trainval:]}


def to_pixels(images: np.ndarray, image_size: int, mean, std) -> torch.Tensor:
    """[N, H, W] or [N, H, W, 3] arrays scaled to [0, 1] -> normalised [N, 3, S, S] floats."""
    import torch
    import torch.nn.functional as F

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
    import torch
    from torch.utils.data import TensorDataset

    pixels = to_pixels(images, image_size, mean, std)
    targets = torch.as_tensor(labels, dtype=torch.long)
    parts = {name: TensorDataset(pixels[idx], targets[idx])
             for name, idx in vtab_indices(len(labels)).items()}
    return Splits(**parts)


class ImageDataset:
    """Images held as stored (uint8 at native size, say) and put through ``to_pixels`` when read:
    10,000 test images pre-transformed at 56 px would hold 376 MB of floats, as uint8 28x28 they
    hold 7.8 MB. ``scale`` maps the stored values to [0, 1] (255 for uint8). A map-style dataset
    (``__len__``, ``__getitem__``): all a DataLoader asks."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, image_size: int, mean, std,
                 scale: float = 255.0):
        import torch

        self.images, self.labels = images, torch.as_tensor(labels, dtype=torch.long)
        self.image_size, self.mean, self.std, self.scale = image_size, mean, std, scale

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list:
        """A DataLoader's whole batch in one call: one resize for the batch, twice as fast."""
        pixels = to_pixels(self.images[indices] / self.scale, self.image_size, self.mean, self.std)
        return list(zip(pixels, self.labels[indices]))


def label_tensor(data) -> torch.Tensor | None:
    """A dataset's labels where they can be read without decoding an input (a TensorDataset's last
    tensor, a ``labels`` or ``targets`` attribute, a list of pairs, through Subsets), else None."""
    import torch
    from torch.utils.data import Subset, TensorDataset

    if isinstance(data, Subset):
        labels = label_tensor(data.dataset)
        return None if labels is None else labels[torch.as_tensor(list(data.indices), dtype=torch.long)]
    if isinstance(data, TensorDataset):
        labels = data.tensors[-1]
    elif isinstance(data, (list, tuple)):
        labels = [item[-1] for item in data if isinstance(item, tuple)]
    else:
        labels = getattr(data, "labels", getattr(data, "targets", None))
    try:
        labels = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        return None
    return labels if labels.dim() == 1 and not labels.is_floating_point() else None


def stand_in_splits(sizes: dict[str, int], num_classes: int, image_size: int, mean, std) -> Splits:
    """Blank images in the numbers a download will bring: the plan and its timed steps come before
    a download of gigabytes rather than after it (decoding the real files is not timed)."""
    def blank(n: int) -> ImageDataset:
        return ImageDataset(np.zeros((n, 8, 8, 3), np.uint8), np.arange(n) % num_classes, image_size, mean, std)

    return Splits(**{split: blank(n) for split, n in sizes.items()})
