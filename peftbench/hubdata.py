"""The ``vtab`` and ``fgvc`` data in the peftbench cache: fetched from the hub once, verified, then read by path.

Without ``--data-root`` a task reads ``<cache>/data/vtab-1k/<task>`` or ``<cache>/data/fgvc/<dataset>``
(cache: ``$PEFTBENCH_CACHE`` or ``~/.cache/peftbench``), filled from the hub the first time it is asked
for: the archive is downloaded into ``<cache>/data/downloads`` (resumable, ``peftbench.hubfetch``),
unpacked into a hidden sibling folder, each task verified there, and only then renamed into place
with ``peftbench-data.json`` beside its data: the archive's sha256, the split sizes, the bytes on disk.
A task folder is used only when that file is in it, so an interrupted unpack or a task that fails
verification never leaves anything a run could read. An archive is deleted once all its tasks are in.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from . import hubfetch
from .errors import UsageError
from .unpack import CorruptArchive, unpack

MARKER = "peftbench-data.json"
#: suite -> its folder under <cache>/data
FOLDERS = {"vtab": "vtab-1k", "fgvc": "fgvc"}


def suite_module(suite: str):
    from .tasks import fgvc, vtab

    return {"vtab": vtab, "fgvc": fgvc}[suite]


def tasks_of(suite: str) -> dict[str, tuple]:
    """task -> (classes, image folder or None) in the suite's table order."""
    if suite == "vtab":
        return {name: (classes, None) for name, _, classes in suite_module(suite).TASKS}
    return {name: (classes, image_dir) for name, classes, image_dir in suite_module(suite).DATASETS}


def expected_sizes(suite: str, task: str) -> dict[str, int]:
    """split -> the size the fetched task will have, for planning before the download."""
    module = suite_module(suite)
    if suite == "vtab":
        return {**module.SIZES, "test": module.TEST_SIZES[task]}
    train, val, test = module.SIZES[task]
    return {"train": train, "val": val, "trainval": train + val, "test": test}


def to_fetch(suite: str, task: str, data_root: str | None) -> bool:
    """Whether a run must download this task's data before it trains."""
    return data_root is None and suite in FOLDERS and installed(suite, task) is None


def data_dir() -> Path:
    from .backbones.cache import cache_dir  # the backbones package imports torch: not at parse time

    return cache_dir() / "data"


def root(suite: str) -> Path:
    """What a loader gets as its data root when no --data-root is given."""
    return data_dir() / FOLDERS[suite]


def downloads() -> Path:
    return data_dir() / "downloads"


def _download(repo: str, file: str) -> hubfetch.Download:
    return hubfetch.download(repo, file, downloads() / repo.replace("/", "--"))


def installed(suite: str, task: str) -> dict | None:
    """The task's record if its verified data is in the cache, else None."""
    try:
        return json.loads((root(suite) / task / MARKER).read_text())
    except (OSError, ValueError):
        return None


def files_for(suite: str, task: str) -> list[tuple[str, str]]:
    """(repo, file) pairs the task's data is made of."""
    module = suite_module(suite)
    if suite == "vtab":
        return [(module.HUB_REPO, module.HUB_ARCHIVE)]
    return [(module.HUB_REPO, module.HUB_SPLITS), (module.HUB_REPO, module.HUB_FILES[task][0])]


def fetch_hint(suite: str, tasks: list[str], reason: str) -> str:
    """The one line a run stops with when the data is neither given nor cached nor reachable."""
    target = suite if suite == "vtab" or len(tasks) == len(tasks_of(suite)) else ",".join(f"{suite}/{t}" for t in tasks)
    more = f" and {len(tasks) - 1} more task(s)" if len(tasks) > 1 else ""
    return (f"no data for {suite}/{tasks[0]}{more} in the cache ({root(suite)}), and {reason}: run `peftbench data "
            f"fetch {target}` where the hub is reachable, or pass --data-root DIR holding {suite_module(suite).LAYOUT}")


def ensure(suite: str, task: str) -> Path:
    """The data root holding ``task``, fetched first if the cache lacks it."""
    if installed(suite, task) is None:
        try:
            failed = fetch(suite, [task])
        except hubfetch.HubUnavailable as exc:
            raise UsageError(fetch_hint(suite, [task], str(exc))) from None
        if task in failed:
            raise UsageError(failed[task])
    return root(suite)


def require(tasks: str, data_root: str | None) -> None:
    """Before a run loads any model: each vtab or fgvc task it names is in the cache, or the hub answers
    for its files; otherwise stop with one line (offline, unreachable, not on the hub)."""
    if data_root is not None:
        return
    from .registry import tasks as registered
    from .task import resolve_tasks

    found = registered()
    missing: dict[str, list[str]] = {}
    for suite, task in resolve_tasks(tasks, found.loaded, found.broken):
        if suite.name in FOLDERS and installed(suite.name, task.name) is None:
            missing.setdefault(suite.name, []).append(task.name)
    for suite, names in missing.items():
        try:
            for repo, file in dict.fromkeys(pair for name in names for pair in files_for(suite, name)):
                hubfetch.describe(repo, file)
        except UsageError as exc:
            raise UsageError(fetch_hint(suite, names, str(exc))) from None


@contextmanager
def _locked_staging(suite: str):
    """A hidden folder beside the suite's, held under a lock; removed whatever happens."""
    from huggingface_hub.utils import WeakFileLock

    downloads().mkdir(parents=True, exist_ok=True)
    with WeakFileLock(downloads() / f".{suite}.lock"):
        for stale in data_dir().glob(f".{FOLDERS[suite]}-*"):  # left by a killed fetch: under the lock, none is live
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{FOLDERS[suite]}-", dir=data_dir()))
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _unpacked(got: hubfetch.Download, into: Path) -> Path:
    print(f"unpacking {got.filename} ({got.size / 1e9:.2f} GB) and verifying it ...", file=sys.stderr, flush=True)
    into.mkdir()
    try:
        unpack(got.path, into)
    except CorruptArchive as exc:
        got.path.unlink(missing_ok=True)
        raise UsageError(f"{got.filename} from {got.repo} is corrupt ({exc}); removed it: run the command again "
                         "to download it anew") from None
    return into


def _install(folder: Path, suite: str, task: str, record: dict) -> None:
    """Record the verified ``folder`` and rename it into place in one step."""
    record = {**record, "suite": suite, "task": task, "fetched": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "bytes": sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())}
    (folder / MARKER).write_text(json.dumps(record, indent=1) + "\n")
    target = root(suite) / task
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and installed(suite, task) is None:
        shutil.rmtree(target)  # never used without its record: what an older peftbench or a person left there
    if not target.exists():
        os.rename(folder, target)


def _source(got: hubfetch.Download) -> dict:
    return {"repo": got.repo, "commit": got.commit, "archive": got.filename, "sha256": got.sha256,
            "archive_bytes": got.size}


def fetch(suite: str, tasks: list[str]) -> dict[str, str]:
    """Bring ``tasks`` of ``suite`` into the cache; task -> the one-line reason for each that failed.

    Raises HubUnavailable when the hub cannot be asked, UsageError for an archive that is corrupt
    or not laid out as expected."""
    failed: dict[str, str] = {}
    with _locked_staging(suite) as staging:
        wanted = [t for t in tasks if installed(suite, t) is None]  # another process may have fetched them
        if wanted and suite == "vtab":
            failed = _fetch_vtab(staging)
        for task in wanted if suite == "fgvc" else ():
            try:
                _fetch_fgvc(task, staging / task)
            except UsageError as exc:
                if isinstance(exc, hubfetch.HubUnavailable):
                    raise
                failed[task] = str(exc)
    return {t: failed[t] for t in tasks if t in failed}


def _fetch_vtab(staging: Path) -> dict[str, str]:
    """The one archive holds all 19 tasks: each that verifies goes in, each that does not is reported."""
    module = suite_module("vtab")
    got = _download(module.HUB_REPO, module.HUB_ARCHIVE)
    unpacked = _unpacked(got, staging / "unpacked")
    tops = [unpacked, *sorted(p for p in unpacked.iterdir() if p.is_dir())]
    base = next((p for p in tops if any((p / t / "train800.txt").is_file() for t in tasks_of("vtab"))), None)
    if base is None:
        raise UsageError(f"{got.filename} from {got.repo} holds no VTAB-1K task folder (<task>/train800.txt) at its "
                         f"top or one level down; peftbench expects {module.LAYOUT}")
    failed = {}
    for task, (classes, _) in tasks_of("vtab").items():
        if installed("vtab", task) is not None:
            continue
        if not (base / task).is_dir():
            failed[task] = f"vtab/{task}: {got.filename} from {got.repo} has no folder {task}/"
            continue
        try:
            splits = module.verify_fetched(base / task, task, classes)
        except UsageError as exc:  # named as a path inside the archive: the unpacked copy is about to go
            failed[task] = str(exc).replace(f"{unpacked}{os.sep}", f"{got.filename}:")
            continue
        _install(base / task, "vtab", task, {**_source(got), "splits": splits, "classes": classes})
    if not failed:
        got.path.unlink(missing_ok=True)
    return failed


def _split_folder(unpacked: Path, names: tuple[str, ...]) -> Path | None:
    """The folder of json.zip named like the dataset (any depth, any case) holding the three split files."""
    wanted = {n.lower() for n in names}
    for folder in sorted(p for p in [unpacked, *unpacked.rglob("*")] if p.is_dir()):
        if folder.name.lower() in wanted and all((folder / f"{s}.json").is_file() for s in ("train", "val", "test")):
            return folder
    return None


def _image_base(unpacked: Path, rel: str, depth: int = 3) -> Path | None:
    """The folder of the unpacked archive that the split files' image paths are relative to."""
    level = [unpacked]
    for _ in range(depth + 1):
        for folder in level:
            if (folder / rel).is_file():
                return folder
        level = sorted(child for folder in level for child in folder.iterdir() if child.is_dir())
    return None


def _fetch_fgvc(task: str, dataset: Path) -> None:
    module = suite_module("fgvc")
    classes, image_dir = tasks_of("fgvc")[task]
    archive, names = module.HUB_FILES[task]
    splits_zip = _download(module.HUB_REPO, module.HUB_SPLITS)
    images = _download(module.HUB_REPO, archive)
    staging = dataset.parent
    found = _split_folder(_unpacked(splits_zip, staging / f"{task}-splits"), names)
    if found is None:
        raise UsageError(f"fgvc/{task}: {splits_zip.filename} from {splits_zip.repo} has no folder named "
                         f"{' or '.join(names)} holding train.json, val.json and test.json")
    dataset.mkdir()
    for split in module.SPLITS:
        shutil.copyfile(found / f"{split}.json", dataset / f"{split}.json")
    first = next(iter(module.read_split(dataset / "train.json")))
    unpacked = _unpacked(images, staging / f"{task}-images")
    base = _image_base(unpacked, first)
    if base is None:
        raise UsageError(f"fgvc/{task}: {archive} from {images.repo} does not hold {first}, the first image "
                         f"train.json lists (looked three folder levels down); it stays in {images.path.parent}")
    if image_dir == ".":
        for child in base.iterdir():
            child.rename(dataset / child.name)
    else:
        base.rename(dataset / image_dir)
    try:
        splits = module.verify_fetched(dataset, task, classes, image_dir)
    except UsageError as exc:  # named inside the dataset folder: the unpacked copy is about to go
        raise UsageError(f"{str(exc).replace(str(dataset), task)} (as unpacked from {archive} and "
                         f"{module.HUB_SPLITS})") from None
    _install(dataset, "fgvc", task, {**_source(images), "splits": splits, "classes": classes,
                                     "split_files": _source(splits_zip)})
    images.path.unlink(missing_ok=True)  # the small json.zip stays: the other four datasets read it too
