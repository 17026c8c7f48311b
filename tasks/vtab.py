"""``vtab``: the 19 VTAB-1K tasks, read from the NOAH release's folders.

Layout: ``<data root>/<task>/`` holds ``train800.txt``, ``val200.txt``, ``train800val200.txt``,
``test.txt`` and the images; each list line is ``<image path relative to the task folder>
<integer label>``. Images are squashed to the backbone's size with no augmentation (NOAH).
Without ``--data-root`` the tasks come from the peftbench cache, which the NOAH-layout archive
V-PETL Bench publishes on the hub fills the first time (``peftbench.hubdata``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from peftbench.errors import UsageError
from peftbench.imagefolder import ImageCache, ImageListDataset, check_images, squash
from peftbench.task import Splits, Suite, Task

#: (task, group, classes) in the order of the VTAB-1K tables.
TASKS = (
    ("cifar", "natural", 100), ("caltech101", "natural", 102), ("dtd", "natural", 47),
    ("oxford_flowers102", "natural", 102), ("oxford_iiit_pet", "natural", 37), ("svhn", "natural", 10),
    ("sun397", "natural", 397),
    ("patch_camelyon", "specialized", 2), ("eurosat", "specialized", 10), ("resisc45", "specialized", 45),
    ("diabetic_retinopathy", "specialized", 5),
    ("clevr_count", "structured", 8), ("clevr_dist", "structured", 6), ("dmlab", "structured", 6),
    ("kitti", "structured", 4), ("dsprites_loc", "structured", 16), ("dsprites_ori", "structured", 16),
    ("smallnorb_azi", "structured", 18), ("smallnorb_ele", "structured", 9),
)
#: each task's test split in the NOAH release, as the VTAB papers list it: only for the plan's estimate
#: before a download (a fetched task is verified against 800 / 200 / 1000 and records its own test size)
TEST_SIZES = {
    "cifar": 10_000, "caltech101": 6_084, "dtd": 1_880, "oxford_flowers102": 6_149, "oxford_iiit_pet": 3_669,
    "svhn": 26_032, "sun397": 21_750, "patch_camelyon": 32_768, "eurosat": 5_400, "resisc45": 6_300,
    "diabetic_retinopathy": 42_670, "clevr_count": 15_000, "clevr_dist": 15_000, "dmlab": 22_735, "kitti": 711,
    "dsprites_loc": 73_728, "dsprites_ori": 73_728, "smallnorb_azi": 12_150, "smallnorb_ele": 12_150,
}
#: split -> list file
LISTS = {"train": "train800.txt", "val": "val200.txt", "trainval": "train800val200.txt", "test": "test.txt"}
#: the split sizes that define VTAB-1K (test is each dataset's own test split)
SIZES = {"train": 800, "val": 200, "trainval": 1000}
#: without --data-root: the NOAH-layout archive V-PETL Bench links, on the hub (peftbench.hubdata)
HUB_REPO, HUB_ARCHIVE = "XiN0919/VTAB-1k", "vtab-1k.zip"
LAYOUT = ("the NOAH VTAB-1K release: one folder per task (e.g. <root>/dtd/) holding train800.txt, "
          "val200.txt, train800val200.txt, test.txt ('<relative image path> <label>' lines) and the images")


def read_list(path: Path) -> list[tuple[str, int]]:
    """``<relative path> <integer label>`` lines; the path may contain spaces."""
    if not path.is_file():
        raise UsageError(f"missing list file {path} (expected {LAYOUT})")
    items = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise UsageError(f"{path}:{number}: expected '<image path> <integer label>', got {line.strip()!r}")
        items.append((parts[0].strip(), int(parts[1])))
    if not items:
        raise UsageError(f"{path} lists no images")
    return items


def check_classes(task_id: str, num_classes: int, lists: dict[Path, list]) -> None:
    """Labels 0..n-1, each used somewhere: a wrong folder or a 1-based list fails here."""
    for path, items in lists.items():
        for rel, label in items:
            if not 0 <= label < num_classes:
                raise UsageError(f"{path}: label {label} of {rel} is outside 0..{num_classes - 1} "
                                 f"({task_id} has {num_classes} classes)")
    used = {label for items in lists.values() for _, label in items}
    if len(used) != num_classes:
        names = ", ".join(str(path) for path in lists)
        raise UsageError(f"{names}: the labels cover {len(used)} classes, but {task_id} has {num_classes}")


def verify_fetched(folder: Path, name: str, num_classes: int) -> dict[str, int]:
    """A task as VTAB-1K defines it: 800 / 200 / 1000 / test images, the task's class count, every
    listed image present (a run checks each image's header when it loads). Split -> its size."""
    task_id, lists = f"vtab/{name}", {}
    for split, file in LISTS.items():
        path = folder / file
        if not path.is_file():
            raise UsageError(f"{task_id}: the {split} split's list {path} is missing")
        lists[split] = read_list(path)
        if split in SIZES and len(lists[split]) != SIZES[split]:
            raise UsageError(f"{task_id}: {path} (the {split} split) lists {len(lists[split])} images, "
                             f"VTAB-1K's {split} split has {SIZES[split]}")
        missing = next((rel for rel, _ in lists[split] if not (folder / rel).is_file()), None)
        if missing is not None:
            raise UsageError(f"{task_id}: image {folder / missing} of the {split} split (listed in {path}) is missing")
    check_classes(task_id, num_classes, {folder / LISTS[split]: items for split, items in lists.items()})
    return {split: len(items) for split, items in lists.items()}


def load_vtab(name: str, num_classes: int, image_size: int, mean, std, data_root=None) -> Splits:
    if data_root is None:  # the cache, filled from the hub the first time
        from peftbench.hubdata import ensure

        data_root = ensure("vtab", name)
    folder = Path(data_root).expanduser() / name
    if not folder.is_dir():
        raise UsageError(f"no folder {folder} for vtab/{name} (--data-root must be {LAYOUT})")
    lists = {folder / file: read_list(folder / file) for file in LISTS.values()}
    check_classes(f"vtab/{name}", num_classes, lists)
    for path, items in lists.items():
        check_images(folder, items, str(path))
    prepare, transform = squash(image_size, mean, std)
    cache = ImageCache()  # shared: train800 images are decoded once for train and trainval
    return Splits(**{split: ImageListDataset(folder, lists[folder / file], transform, prepare, cache)
                     for split, file in LISTS.items()})


def vtab_task(name: str, group: str, num_classes: int) -> Task:
    return Task("vtab", name, group, "image", num_classes, partial(load_vtab, name, num_classes), kind="classify")


VTAB = Suite(
    name="vtab",
    description="VTAB-1K, 19 tasks in 3 groups (NOAH folders: --data-root, else fetched from the hub)",
    tasks=tuple(vtab_task(*spec) for spec in TASKS),
    recipe={"backbone": "timm:vit_base_patch16_224.augreg_in21k", "image_size": 224, "epochs": 100, "batch_size": 64},
)
