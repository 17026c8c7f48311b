"""``fgvc``: five fine-grained datasets with the VPT protocol's split files.

Layout: ``<data root>/<dataset>/`` holds ``train.json``, ``val.json`` and ``test.json``
(``{relative image path: class id}``, VPT's files) beside the dataset's images, which lie in
``images/`` (CUB, NABirds), ``Images/`` (Stanford Dogs) or the folder itself (Cars, Flowers).
Class ids become 0..n-1 in sorted order, taken over all three files: NABirds' val.json lacks two
of the 555 classes, so a per-file mapping would shift its labels. Without ``--data-root`` each
dataset comes from the peftbench cache, filled from V-PETL Bench's hub repository the first time
it is asked for (``peftbench.hubdata``).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from peftbench.errors import UsageError
from peftbench.imagefolder import ImageCache, ImageListDataset, check_images, resize_crop
from peftbench.task import Splits, Suite, Task

#: (dataset, classes, image folder inside the dataset folder)
DATASETS = (
    ("cub", 200, "images"), ("nabird", 555, "images"), ("flowers", 102, "."),
    ("dogs", 120, "Images"), ("cars", 196, "."),
)
SPLITS = ("train", "val", "test")
#: VPT's split sizes (train, val, test): only for the plan's estimate before a download
SIZES = {"cub": (5_394, 600, 5_794), "nabird": (21_536, 2_393, 24_633), "flowers": (1_020, 1_020, 6_149),
         "dogs": (10_800, 1_200, 8_580), "cars": (7_329, 815, 8_041)}
#: without --data-root: V-PETL Bench's hub repository, VPT's split files (json.zip) and each dataset's archive
HUB_REPO, HUB_SPLITS = "XiN0919/FGVC", "json.zip"
#: dataset -> (its archive in HUB_REPO, the names its split folder may have inside json.zip). CUB's and
#: Cars' archive names are confirmed; the other three are the datasets' official names (docs/suites.md).
HUB_FILES = {
    "cub": ("CUB_200_2011.tgz", ("CUB_200_2011", "cub", "CUB200")),
    "nabird": ("nabirds.tar.gz", ("nabirds", "nabird")),
    "flowers": ("102flowers.tgz", ("OxfordFlower", "OxfordFlowers", "flowers", "oxford_flowers", "flowers102")),
    "dogs": ("images.tar", ("StanfordDogs", "dogs", "stanford_dogs")),
    "cars": ("car_ims.tgz", ("StanfordCars", "cars", "stanford_cars")),
}
LAYOUT = ("a folder per dataset (cub, nabird, flowers, dogs, cars) holding VPT's train.json, val.json, "
          "test.json beside the images (CUB, NABirds: images/, Dogs: Images/, Cars, Flowers: the folder itself)")


def read_split(path: Path) -> dict[str, int | str]:
    """``{relative image path: class id}`` from one of VPT's JSON files."""
    if not path.is_file():
        raise UsageError(f"missing split file {path} (--data-root must hold {LAYOUT})")
    try:
        split = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(split, dict) or not split:
        raise UsageError(f"{path}: expected a non-empty JSON object {{relative image path: class id}}")
    for rel, label in split.items():
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            raise UsageError(f"{path}: class id of {rel} must be an integer or a string, got {label!r}")
    return split


def class_index(ids) -> dict:
    """Class id -> 0..n-1 by sorting, numerically when every id is a number ('001' < '010' < '100')."""
    numeric = all(str(i).lstrip("-").isdigit() for i in ids)
    key = (lambda i: int(i)) if numeric else str
    return {i: n for n, i in enumerate(sorted(set(ids), key=key))}


def read_splits(folder: Path, num_classes: int, task_id: str) -> dict[str, list[tuple[str, int]]]:
    """Each split as (relative path, contiguous label) pairs; the class count must match the task's."""
    raw = {name: read_split(folder / f"{name}.json") for name in SPLITS}
    ids = [label for split in raw.values() for label in split.values()]
    index = class_index(ids)
    if len(index) != num_classes:
        files = ", ".join(str(folder / f"{name}.json") for name in SPLITS)
        raise UsageError(f"{files}: {len(index)} distinct class ids, but {task_id} has {num_classes} classes")
    return {name: [(rel, index[label]) for rel, label in split.items()] for name, split in raw.items()}


def verify_fetched(folder: Path, name: str, num_classes: int, image_dir: str) -> dict[str, int]:
    """The dataset's three split files, its class count, every listed image present (a run checks
    each image's header when it loads). Split -> its size."""
    splits = read_splits(folder, num_classes, f"fgvc/{name}")
    for split, items in splits.items():
        missing = next((rel for rel, _ in items if not (folder / image_dir / rel).is_file()), None)
        if missing is not None:
            raise UsageError(f"fgvc/{name}: image {folder / image_dir / missing} of the {split} split (listed in "
                             f"{folder / f'{split}.json'}) is missing")
    return {split: len(items) for split, items in splits.items()}


def load_fgvc(name: str, num_classes: int, image_dir: str, image_size: int, mean, std, data_root=None) -> Splits:
    if data_root is None:  # the cache, filled from the hub the first time
        from peftbench.hubdata import ensure

        data_root = ensure("fgvc", name)
    folder = Path(data_root).expanduser() / name
    if not folder.is_dir():
        raise UsageError(f"no folder {folder} for fgvc/{name} (--data-root must hold {LAYOUT})")
    splits = read_splits(folder, num_classes, f"fgvc/{name}")
    images = folder / image_dir
    for split, items in splits.items():
        check_images(images, items, str(folder / f"{split}.json"))
    prepare, train, test = resize_crop(image_size, mean, std)
    cache = ImageCache()  # one per task: bounded memory, and train images reused by trainval
    data = partial(ImageListDataset, images, prepare=prepare, cache=cache)
    return Splits(train=data(splits["train"], train), val=data(splits["val"], test),
                  trainval=data(splits["train"] + splits["val"], train), test=data(splits["test"], test))


def fgvc_task(name: str, num_classes: int, image_dir: str) -> Task:
    return Task("fgvc", name, "fgvc", "image", num_classes, partial(load_fgvc, name, num_classes, image_dir),
                kind="classify")


FGVC = Suite(
    name="fgvc",
    description="FGVC: CUB, NABirds, Flowers, Dogs, Cars with VPT's splits (--data-root, else fetched from the hub)",
    tasks=tuple(fgvc_task(*spec) for spec in DATASETS),
    recipe={"backbone": "timm:vit_base_patch16_224.augreg_in21k", "image_size": 224, "epochs": 100, "batch_size": 64},
)
