"""Unpack a downloaded zip or tar archive without trusting it.

An archive from the hub may be truncated, corrupt or hostile. A member whose path is absolute or
climbs out with ``..`` is refused (the whole archive is then bad), links and device files are
skipped (no dataset needs them), and every decoding error (a bad CRC, a cut gzip stream) becomes
one ``CorruptArchive``, so the caller can remove the archive and say so in one line. Disk errors
stay OSErrors: a full disk is not a corrupt archive.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

#: what the decoders raise on bad data (gzip.BadGzipFile is an OSError, hence listed by name)
DECODE_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


class CorruptArchive(Exception):
    """The archive cannot be unpacked as it is: what is wrong, in a few words."""


def _target(into: Path, name: str) -> Path | None:
    """Where member ``name`` goes under ``into``; None for the archive's root itself."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise CorruptArchive(f"member {name!r} points outside the archive")
    parts = [p for p in path.parts if p not in ("", ".")]
    return into.joinpath(*parts) if parts else None


def _unzip(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as z:
        for member in z.infolist():
            target = _target(into, member.filename)
            if target is None:
                continue
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if (member.external_attr >> 16) & 0o170000 == 0o120000:  # a symbolic link
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(member) as src, target.open("wb") as dst:  # z.open checks the CRC at the end
                shutil.copyfileobj(src, dst, 1 << 20)


def _untar(archive: Path, into: Path) -> None:
    with tarfile.open(archive, "r:*") as t:
        for member in t:  # one pass: a .tgz is read sequentially
            target = _target(into, member.name)
            if target is None:
                continue
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                with t.extractfile(member) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)


def unpack(archive: Path, into: Path) -> None:
    """Unpack ``archive`` (zip, tar, tar.gz/bz2/xz) into the existing folder ``into``."""
    try:
        if zipfile.is_zipfile(archive):
            _unzip(archive, into)
        elif tarfile.is_tarfile(archive):
            _untar(archive, into)
        else:
            raise CorruptArchive("neither a zip nor a tar archive")
    except DECODE_ERRORS as exc:
        raise CorruptArchive(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
