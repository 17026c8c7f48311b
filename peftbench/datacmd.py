"""``peftbench data``: what of ``vtab`` and ``fgvc`` the cache holds, fetching it, verifying it.

``run`` fetches a task's data itself the first time it needs it (``peftbench.hubdata``); this
command does it ahead of time (before going offline, or for a whole suite at once), shows what is
there, and re-checks it, or a ``--data-root`` folder, the way a fetch verifies it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import hubdata
from .errors import UsageError

#: roughly what a whole suite downloads
SIZES = {"vtab": "about 4.7 GB", "fgvc": "about 14 GB, NABirds alone about 10 GB"}


def add_parser(subparsers) -> None:
    data = subparsers.add_parser("data", help="list, fetch or verify the vtab and fgvc data (the peftbench cache)")
    actions = data.add_subparsers(dest="action", required=True, parser_class=type(data))
    actions.add_parser("list", help="each suite: present or not, where, its size on disk")
    fetch = actions.add_parser("fetch", help="download, unpack and verify a suite or some of its tasks")
    fetch.add_argument("target", help="suites or tasks as --tasks takes them: vtab, fgvc, fgvc/flowers, ...")
    verify = actions.add_parser("verify", help="check fetched data again: split sizes, class counts, every image")
    verify.add_argument("target", help="suites or tasks as --tasks takes them: vtab, fgvc/cub, ...")
    verify.add_argument("--data-root", help="check this folder (the layout --data-root takes) instead of the cache")


def human(size: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return ""  # pragma: no cover


def chosen(target: str) -> dict[str, list[str]]:
    """suite -> its tasks named by ``target``; only suites this command fetches."""
    from .registry import tasks
    from .task import resolve_tasks

    found = tasks()
    picked: dict[str, list[str]] = {}
    for suite, task in resolve_tasks(target, found.loaded, found.broken):
        if suite.name not in hubdata.FOLDERS:
            raise UsageError(f"peftbench data handles {' and '.join(hubdata.FOLDERS)}; {suite.name} is not fetched "
                             "into the cache (docs/suites.md says where its data comes from)")
        picked.setdefault(suite.name, []).append(task.name)
    return picked


def cmd_data(args) -> int:
    if args.action == "list":
        return show()
    picked = chosen(args.target)
    return fetch(picked) if args.action == "fetch" else verify(picked, args.data_root)


def show() -> int:
    rows = []
    for suite in hubdata.FOLDERS:
        names = list(hubdata.tasks_of(suite))
        records = {t: r for t in names if (r := hubdata.installed(suite, t)) is not None}
        missing = [t for t in names if t not in records]
        state = ("present" if not missing else "absent" if not records
                 else f"partly: {len(records)} of {len(names)}, missing {', '.join(missing)}")
        size = human(sum(r.get("bytes", 0) for r in records.values())) if records else "-"
        repos = dict.fromkeys(repo for t in names for repo, _ in hubdata.files_for(suite, t))
        note = "" if not missing else f"  (peftbench data fetch {suite}: {SIZES[suite]} from {', '.join(repos)})"
        rows.append((suite, state, size, f"{hubdata.root(suite)}{note}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    for part in sorted(hubdata.downloads().glob("*/*.part")):
        print(f"unfinished download {part} ({human(part.stat().st_size)}): the next fetch resumes it")
    return 0


def _line(task_id: str, splits: dict, classes: int, where: Path) -> str:
    return f"{task_id}: ok, {' / '.join(f'{n:,}' for n in splits.values())} images " \
           f"({', '.join(splits)}), {classes} classes, in {where}"


def fetch(picked: dict[str, list[str]]) -> int:
    bad = 0
    for suite, names in picked.items():
        try:
            failed = hubdata.fetch(suite, names)
        except UsageError as exc:
            raise UsageError(f"cannot fetch {suite}: {exc}") from None
        for name in names:
            record = hubdata.installed(suite, name)
            if name in failed or record is None:
                bad += 1
                print(f"{suite}/{name}: FAILED: {failed.get(name, 'not installed')}")
            else:
                print(_line(f"{suite}/{name}", record["splits"], record["classes"], hubdata.root(suite) / name)
                      + f"; {record['archive']} sha256 {record['sha256'][:16]}…")
    return 1 if bad else 0


def verify(picked: dict[str, list[str]], data_root: str | None) -> int:
    bad = 0
    for suite, names in picked.items():
        module, tasks = hubdata.suite_module(suite), hubdata.tasks_of(suite)
        base = Path(data_root).expanduser() if data_root else hubdata.root(suite)
        for name in names:
            folder, (classes, image_dir) = base / name, tasks[name]
            record = None if data_root else hubdata.installed(suite, name)
            if not folder.is_dir() or (not data_root and record is None):
                bad += 1
                print(f"{suite}/{name}: missing: no {folder}" + ("" if data_root else
                      f" (peftbench data fetch {suite if suite == 'vtab' else f'{suite}/{name}'})"))
                continue
            try:
                splits = (module.verify_fetched(folder, name, classes) if image_dir is None
                          else module.verify_fetched(folder, name, classes, image_dir))
            except UsageError as exc:
                bad += 1
                print(f"{suite}/{name}: FAILED: {exc}")
                continue
            sha = f"; {record['archive']} sha256 {record['sha256'][:16]}… (hashed when fetched)" if record else ""
            print(_line(f"{suite}/{name}", splits, classes, folder) + sha)
    if bad:
        print(f"{bad} task(s) missing or failing verification", file=sys.stderr)
    return 1 if bad else 0
