"""``quick``: two real image tasks that ``pip install`` alone provides, split the VTAB-1K way.

- digits: scikit-learn's 1,797 handwritten 8x8 digits, 10 classes.
- textures: brick, grass and gravel photos from scikit-image, cut into non-overlapping
  24x24 patches (441 per class); no patch overlaps another, so test never sees train pixels.
"""

from __future__ import annotations

import numpy as np

from peftbench.data import array_splits
from peftbench.task import Suite, Task

TEXTURES = ("brick", "grass", "gravel")
PATCH = 24


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (images [N, 8, 8] in 0..16, labels), read from the file it ships.

    Importing scikit-learn takes seconds, more than the rest of loading this task together; its
    ``load_digits`` reads the same CSV, so that is the fallback if the file ever moves.
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    path = Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz") if spec else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images, digits.target
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def load_digits_task(image_size, mean, std, data_root=None):
    images, labels = digits_arrays()
    return array_splits(images / 16.0, labels, image_size, mean, std)


def texture_patches(patch: int = PATCH) -> tuple[np.ndarray, np.ndarray]:
    import skimage.data

    images, labels = [], []
    for label, name in enumerate(TEXTURES):
        photo = getattr(skimage.data, name)().astype(np.float32) / 255.0
        rows, cols = photo.shape[0] // patch, photo.shape[1] // patch
        tiles = photo[:rows * patch, :cols * patch].reshape(rows, patch, cols, patch)
        images.append(tiles.transpose(0, 2, 1, 3).reshape(-1, patch, patch))
        labels.append(np.full(rows * cols, label))
    return np.concatenate(images), np.concatenate(labels)


def load_textures_task(image_size, mean, std, data_root=None):
    images, labels = texture_patches()
    return array_splits(images, labels, image_size, mean, std)


QUICK = Suite(
    name="quick",
    description="scikit-learn digits and scikit-image textures, VTAB-1K splits, offline",
    tasks=(
        Task("quick", "digits", "natural", "image", 10, load_digits_task),
        Task("quick", "textures", "natural", "image", len(TEXTURES), load_textures_task),
    ),
    recipe={"backbone": "dinov2-s", "image_size": 56, "epochs": 3, "batch_size": 32, "trials": 2, "seeds": 1},
)
