"""VTAB-1K and FGVC suites on tiny folders built from real images, in each real layout."""

import json
from pathlib import Path

import pytest
import torch
from conftest import MEAN, SHARED_DATA, STD, make_vtab, save_digit

from peftbench import imagefolder, registry
from peftbench.errors import UsageError
from peftbench.imagefolder import ImageCache, ImageListDataset
from peftbench.tasks import fgvc, vtab

# ---- VTAB-1K ------------------------------------------------------------------------------


def test_vtab_suite_matches_the_protocol():
    classes = {"caltech101": 102, "cifar": 100, "dtd": 47, "oxford_flowers102": 102, "oxford_iiit_pet": 37,
               "svhn": 10, "sun397": 397, "patch_camelyon": 2, "eurosat": 10, "resisc45": 45,
               "diabetic_retinopathy": 5, "clevr_count": 8, "clevr_dist": 6, "dmlab": 6, "kitti": 4,
               "dsprites_loc": 16, "dsprites_ori": 16, "smallnorb_azi": 18, "smallnorb_ele": 9}
    suite = vtab.VTAB
    assert suite.name == "vtab" and {t.name: t.num_classes for t in suite.tasks} == classes
    groups = {g: [t.name for t in suite.tasks if t.group == g] for g in ("natural", "specialized", "structured")}
    assert [len(v) for v in groups.values()] == [7, 4, 8]
    assert groups["specialized"] == ["patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"]
    assert all(t.kind == "classify" and t.modality == "image" and t.suite == "vtab" for t in suite.tasks)
    assert suite.recipe == {"backbone": "timm:vit_base_patch16_224.augreg_in21k", "image_size": 224,
                            "epochs": 100, "batch_size": 64}


def test_vtab_loads_a_noah_folder(tmp_path):
    make_vtab(tmp_path)
    splits = vtab.vtab_task("dtd", "natural", 3).load(32, MEAN, STD, str(tmp_path))
    assert [len(s) for s in (splits.train, splits.val, splits.trainval, splits.test)] == [6, 3, 9, 9]
    assert [splits.val[i][1] for i in range(3)] == [0, 1, 2]
    x, y = splits.test[1]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 1
    assert torch.equal(x, splits.test[1][0])  # no augmentation
    # grey input becomes RGB, then ImageNet-normalised: a black corner is -mean/std per channel
    black = splits.test[0][0][:, 0, 0]  # a lossless PNG
    assert torch.allclose(black, -torch.tensor(MEAN) / torch.tensor(STD), atol=0.02)


def test_vtab_lists_allow_spaces_in_paths(tmp_path):
    folder = make_vtab(tmp_path)
    save_digit(folder / "my images" / "a b.png", 7)
    for file in ("train800", "train800val200"):
        with open(folder / f"{file}.txt", "a") as out:
            out.write("my images/a b.png  2\n")
    splits = vtab.vtab_task("dtd", "natural", 3).load(16, MEAN, STD, str(tmp_path))
    assert splits.train.items[-1] == ("my images/a b.png", 2) and splits.train[6][0].shape == (3, 16, 16)


def _write(path: Path, text: str):
    path.write_text(text)


def _corrupt(path: Path):
    path.write_bytes(b"this is not a JPEG" * 10)


@pytest.mark.parametrize("damage, named", [
    (lambda f: (f / "val200.txt").unlink(), "val200.txt"),
    (lambda f: _write(f / "test.txt", "images/0.png 0\nimages/1.jpg\n"), "test.txt:2"),
    (lambda f: _write(f / "test.txt", "images/0.png zero\n"), "test.txt:1"),
    (lambda f: (f / "images" / "2.png").unlink(), "images/2.png"),
    (lambda f: _corrupt(f / "images" / "1.jpg"), "images/1.jpg"),
    (lambda f: _write(f / "train800.txt", "images/0.png 3\n"), "train800.txt"),  # label past 0..2
], ids=["missing list", "one field", "label not a number", "missing image", "corrupt image", "label out of range"])
def test_vtab_bad_folders_name_the_file(tmp_path, damage, named):
    damage(make_vtab(tmp_path))
    with pytest.raises(UsageError, match=named.replace(".", r"\.")):
        vtab.vtab_task("dtd", "natural", 3).load(16, MEAN, STD, str(tmp_path))


def test_vtab_class_count_must_match_the_task(tmp_path):
    make_vtab(tmp_path, classes=3)
    with pytest.raises(UsageError, match=r"cover 3 classes, but vtab/dtd has 5") as err:
        vtab.vtab_task("dtd", "natural", 5).load(16, MEAN, STD, str(tmp_path))
    assert "train800.txt" in str(err.value) and "\n" not in str(err.value)


def test_vtab_needs_a_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path))  # nothing fetched, and the hub offline (conftest)
    with pytest.raises(UsageError, match="peftbench data fetch vtab.*--data-root.*NOAH.*train800.txt"):
        vtab.VTAB.tasks[0].load(224, MEAN, STD, None)
    with pytest.raises(UsageError, match="no folder .*cifar"):
        vtab.VTAB.tasks[0].load(224, MEAN, STD, str(tmp_path))


# ---- FGVC ---------------------------------------------------------------------------------

#: dataset -> (image folder, class ids in the style of its real split files)
FGVC_STYLE = {"cub": ("images", ["100", "9", "010"]), "nabird": ("images", [1010, 295, 300]),
              "flowers": (".", [1, 2, 102]), "dogs": ("Images", [120, 1, 7]), "cars": (".", [5, 196, 1])}


def make_fgvc(root: Path, name: str, sizes=(6, 3, 4)) -> Path:
    """``<root>/<name>/`` in the VPT layout: split JSON files beside the image folder."""
    image_dir, ids = FGVC_STYLE[name]
    folder = root / name
    for split, n in zip(fgvc.SPLITS, sizes):
        entries = {}
        for i in range(n):
            rel = f"c{i % 3}/{split}_{i}.{'jpg' if i % 2 else 'png'}"
            save_digit(folder / image_dir / rel, i)
            entries[rel] = ids[i % 3]
        (folder / f"{split}.json").write_text(json.dumps(entries))
    return folder


def fgvc_small(name: str, classes=3):
    return fgvc.fgvc_task(name, classes, FGVC_STYLE[name][0])


def test_fgvc_suite_matches_the_protocol():
    suite = fgvc.FGVC
    assert {t.name: t.num_classes for t in suite.tasks} == {
        "cub": 200, "nabird": 555, "flowers": 102, "dogs": 120, "cars": 196}
    assert all(t.kind == "classify" and t.suite == "fgvc" for t in suite.tasks)
    assert suite.recipe["backbone"] == "timm:vit_base_patch16_224.augreg_in21k"
    assert (suite.recipe["image_size"], suite.recipe["epochs"], suite.recipe["batch_size"]) == (224, 100, 64)


@pytest.mark.parametrize("name", list(FGVC_STYLE))
def test_fgvc_loads_each_vpt_layout(tmp_path, name):
    make_fgvc(tmp_path, name)
    splits = fgvc_small(name).load(16, MEAN, STD, str(tmp_path))
    assert [len(s) for s in (splits.train, splits.val, splits.trainval, splits.test)] == [6, 3, 9, 4]
    # ids sorted numerically, so a label is the rank of the id: '9' < '010' < '100'
    rank = {i: n for n, i in enumerate(sorted(FGVC_STYLE[name][1], key=int))}
    assert [splits.train[i][1] for i in range(3)] == [rank[i] for i in FGVC_STYLE[name][1]]
    assert splits.trainval.items == splits.train.items + splits.val.items
    x, _ = splits.test[0]
    assert x.shape == (3, 16, 16) and torch.equal(x, splits.test[0][0])  # centre crop: fixed
    assert splits.val[0][0].shape == (3, 16, 16) and torch.equal(splits.val[0][0], splits.val[0][0])
    draws = [splits.train[1][0] for _ in range(8)]  # random crop and flip: they vary
    assert all(d.shape == (3, 16, 16) for d in draws)
    assert any(not torch.equal(draws[0], d) for d in draws[1:])


@pytest.mark.parametrize("damage, named", [
    (lambda f: (f / "val.json").unlink(), "val.json"),
    (lambda f: _write(f / "test.json", '{"c0/test_0.png": 9,'), "test.json"),
    (lambda f: _write(f / "test.json", '["c0/test_0.png"]'), "test.json"),
    (lambda f: (f / "images" / "c1" / "train_1.jpg").unlink(), "images/c1/train_1.jpg"),
    (lambda f: _corrupt(f / "images" / "c1" / "val_1.jpg"), "images/c1/val_1.jpg"),
], ids=["missing split file", "invalid JSON", "not an object", "missing image", "corrupt image"])
def test_fgvc_bad_folders_name_the_file(tmp_path, damage, named):
    damage(make_fgvc(tmp_path, "cub"))
    with pytest.raises(UsageError, match=named.replace(".", r"\.")):
        fgvc_small("cub").load(16, MEAN, STD, str(tmp_path))


def test_fgvc_class_count_must_match_the_task(tmp_path):
    make_fgvc(tmp_path, "dogs")
    with pytest.raises(UsageError, match=r"train\.json.*3 distinct class ids, but fgvc/dogs has 120"):
        fgvc.FGVC.tasks[3].load(16, MEAN, STD, str(tmp_path))


def test_fgvc_needs_a_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path))  # nothing fetched, and the hub offline (conftest)
    with pytest.raises(UsageError, match="peftbench data fetch fgvc/cub.*--data-root.*train.json"):
        fgvc.FGVC.tasks[0].load(224, MEAN, STD, None)


@pytest.mark.parametrize("name, classes, sizes", [
    ("cub", 200, (5394, 600, 5794)), ("nabird", 555, (21536, 2393, 24633)), ("flowers", 102, (1020, 1020, 6149)),
    ("dogs", 120, (10800, 1200, 8580)), ("cars", 196, (7329, 815, 8041)),
])
def test_real_fgvc_split_files_parse(name, classes, sizes):
    folder = SHARED_DATA / "fgvc-splits" / name
    if not folder.is_dir():
        pytest.skip(f"{folder} absent: the real VPT split files live beside the project, not in it")
    splits = fgvc.read_splits(folder, classes, f"fgvc/{name}")
    assert tuple(len(splits[s]) for s in fgvc.SPLITS) == sizes
    labels = {label for items in splits.values() for _, label in items}
    assert labels == set(range(classes))
    assert {label for _, label in splits["train"]} == labels  # every class is trained on


# ---- lazy decoding ------------------------------------------------------------------------

@pytest.fixture
def decodes(monkeypatch):
    calls = []

    def counting(path):
        calls.append(path)
        return real(path)

    real = imagefolder.decode
    monkeypatch.setattr(imagefolder, "decode", counting)
    return calls


def test_a_large_split_decodes_only_what_is_indexed(tmp_path, decodes):
    make_vtab(tmp_path, sizes=(6, 3, 2000), files=4)
    splits = vtab.vtab_task("dtd", "natural", 3).load(16, MEAN, STD, str(tmp_path))
    assert len(splits.test) == 2000 and decodes == [] and len(splits.test.cache) == 0
    splits.test[5], splits.test[1999]
    assert len(decodes) == 2


def test_the_cache_stays_within_its_bound(tmp_path, decodes):
    paths = [save_digit(tmp_path / f"{i}.png", i).name for i in range(6)]
    cache = ImageCache(max_entries=4)
    prepare, transform = imagefolder.squash(8, MEAN, STD)
    data = ImageListDataset(tmp_path, [(paths[i % 6], i % 6) for i in range(2000)], transform, prepare, cache)
    for i in range(0, 2000, 7):
        data[i]
        assert len(cache) <= 4
    data[3]
    before = len(decodes)
    data[3], data[9]  # 9 and 3 are the same file: both cached
    assert len(decodes) == before


def test_an_image_failing_only_at_decode_names_the_file(tmp_path):
    folder = make_vtab(tmp_path)
    good = (folder / "images" / "1.jpg").read_bytes()
    (folder / "images" / "1.jpg").write_bytes(good[: len(good) - 40])  # the header survives
    splits = vtab.vtab_task("dtd", "natural", 3).load(16, MEAN, STD, str(tmp_path))
    with pytest.raises(UsageError, match=r"images/1\.jpg"):
        splits.test[1]


# ---- the command line ---------------------------------------------------------------------

def test_vtab_runs_through_the_cli(tmp_path):
    if "vtab" not in registry.tasks().loaded:
        pytest.skip("the vtab suite is not registered: pip install -e . after adding its entry point")
    from peftbench.cli import main
    from peftbench.store import Store

    make_vtab(tmp_path / "data", classes=47, sizes=(47, 47, 47))
    store = str(tmp_path / "r.db")
    assert main(["run", "--methods", "linear", "--tasks", "vtab/dtd", "--data-root", str(tmp_path / "data"),
                 "--backbone", "tiny-vit", "--image-size", "32", "--epochs", "1", "--no-progress",
                 "--trials", "0", "--seeds", "1", "--store", store]) == 0
    [record] = Store(store).records()
    assert (record["suite"], record["task"], record["status"]) == ("vtab", "dtd", "ok")
