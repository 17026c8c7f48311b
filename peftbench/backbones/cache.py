"""Where rebuilt backbones live on disk, and how they get there without half-written files."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable


def cache_dir() -> Path:
    """$PEFTBENCH_CACHE if set, else ~/.cache/peftbench."""
    return Path(os.environ.get("PEFTBENCH_CACHE") or Path.home() / ".cache" / "peftbench")


def cached_dir(name: str, build: Callable[[Path], None]) -> Path:
    """Return cache_dir()/name, first filling it with ``build(tmp_dir)`` if it is absent.

    ``build`` writes into a private temp folder next to the target, which is then renamed
    into place in one step: a killed build leaves only a ``.name-*`` leftover that is never
    read (and is swept an hour later); when two processes race, the first rename wins.
    """
    final = cache_dir() / name
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{name}-*"):  # left by a SIGKILLed build; none lasts an hour
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 3600:
                shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    try:
        build(tmp)
        for f in tmp.iterdir():  # mkdtemp and some writers make files private; caches are shared
            f.chmod(0o644)
        tmp.chmod(0o755)
        try:
            os.rename(tmp, final)  # atomic; fails if another process already put one there
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def package_dir(package: str, pip_install: str) -> Path:
    """Folder of an installed package, found without importing it.

    Importing would run the package's own ``__init__``, which pulls in dependencies we
    deliberately did not install (albumentations, llama_cpp); we only want its data files.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"The Python package {package!r} is not installed; it ships the pretrained "
            f"weights. Install it with: {pip_install}"
        )
    return Path(next(iter(spec.submodule_search_locations)))
