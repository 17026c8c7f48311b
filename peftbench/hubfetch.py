"""One file of a Hugging Face dataset repository onto disk: resumable across runs, hashed once.

``hf_hub_download`` (huggingface_hub 2.x) resumes only within one call: it writes to a
per-process temporary file and deletes it when the call fails, so a 10 GB archive cut off at
9 GB by a lost connection or Ctrl-C starts over. Here the partial file is kept beside its final
name (both keyed by the file's ETag), and the next call resumes it with a Range request, through
huggingface_hub's own requests: its HEAD (``get_hf_file_metadata``: commit, ETag, size, CDN
redirect) and its GET (``http_get``: the tqdm bar, retries that resume within the call). A
finished file is hashed once; where the hub's ETag is a sha256 (LFS files) a mismatch is
refused and the file removed.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .errors import UsageError

try:
    from httpx2 import HTTPError as TransportError  # huggingface_hub >= 2
except ImportError:  # pragma: no cover - older huggingface_hub speaks requests, whose errors are OSErrors
    TransportError = OSError

SHA256 = re.compile(r"[0-9a-f]{64}")
#: seconds to wait for the hub's answer to a HEAD request
HEAD_TIMEOUT = 20


class HubUnavailable(UsageError):
    """The hub cannot be asked: offline mode, no route, or a server error. Says why in a few words."""


class CorruptDownload(UsageError):
    """The bytes received are not the file the hub describes; the partial file is already removed."""


@dataclass(frozen=True)
class Download:
    """A complete local copy of ``repo``/``filename`` at ``commit``."""

    path: Path
    repo: str
    filename: str
    commit: str | None
    size: int
    sha256: str


def endpoint() -> str:
    """``$HF_ENDPOINT`` as it is now (huggingface_hub reads it once, at import), else the hub's."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def offline() -> bool:
    from huggingface_hub import constants

    return constants.is_offline_mode()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return next(line.strip() for line in text.splitlines() if line.strip())


def describe(repo: str, filename: str, revision: str = "main"):
    """(url, metadata) of a file, from one HEAD request; every failure is a one-line UsageError."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (EntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    if offline():
        raise HubUnavailable("the hub is offline (HF_HUB_OFFLINE is set)")
    url = hf_hub_url(repo, filename, repo_type="dataset", revision=revision, endpoint=endpoint())
    try:
        meta = get_hf_file_metadata(url, timeout=HEAD_TIMEOUT, endpoint=endpoint())
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as exc:
        held = _listing(repo, revision)
        raise UsageError(f"the hub has no {filename} in the dataset repository {repo} "
                         + (f"(it holds {held})" if held else f"({_first_line(exc)})")) from None
    except OfflineModeIsEnabled:
        raise HubUnavailable("the hub is offline (HF_HUB_OFFLINE is set)") from None
    except (TransportError, OSError) as exc:
        raise HubUnavailable(f"cannot reach the hub at {endpoint()} ({_first_line(exc)})") from None
    if meta.etag is None or meta.size is None:
        raise HubUnavailable(f"{url} did not answer like the hub (no ETag or size): is HF_ENDPOINT right?")
    return url, meta


def _listing(repo: str, revision: str) -> str:
    """The repository's files, so that a renamed archive is found by reading one line; empty when
    the hub will not list them."""
    from huggingface_hub import HfApi

    try:
        files = HfApi(endpoint=endpoint()).list_repo_files(repo, repo_type="dataset", revision=revision)
    except Exception:  # the listing only adds to an error already being raised
        return ""
    return ", ".join(sorted(files)[:20]) + (f" and {len(files) - 20} more" if len(files) > 20 else "")


def local_paths(folder: Path, filename: str, etag: str) -> tuple[Path, Path]:
    """(complete, partial) copies of this version of the file: another version never resumes it."""
    complete = folder / f"{Path(filename).name}.{etag[:16]}"
    return complete, complete.with_name(complete.name + ".part")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(repo: str, filename: str, folder: Path, revision: str = "main") -> Download:
    """``repo``/``filename`` into ``folder``, resuming what an earlier call left there."""
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    url, meta = describe(repo, filename, revision)
    folder.mkdir(parents=True, exist_ok=True)
    complete, part = local_paths(folder, filename, meta.etag)
    for stale in folder.glob(f"{Path(filename).name}.*"):
        if stale not in (complete, part):  # an older version of the file
            stale.unlink(missing_ok=True)
    if complete.is_file() and complete.stat().st_size == meta.size:  # verified when it was renamed so
        digest = meta.etag if SHA256.fullmatch(meta.etag) else sha256_of(complete)
        return Download(complete, repo, filename, meta.commit_hash, meta.size, digest)
    done = part.stat().st_size if part.exists() else 0
    if done > meta.size:
        part.unlink()
        done = 0
    # as hf_hub_download does: an LFS file is fetched from where the HEAD was redirected, without
    # the token when that is another host (a signed CDN url)
    source = meta.location if getattr(meta, "xet_file_data", None) is None and meta.location != url else url
    headers = build_hf_headers(library_name="peftbench")
    if urlparse(source).netloc != urlparse(url).netloc:
        headers.pop("authorization", None)
    try:
        with part.open("ab") as out:
            http_get(source, out, resume_size=done, headers=headers, expected_size=meta.size,
                     displayed_filename=Path(filename).name)
    except (TransportError, OSError) as exc:
        got = part.stat().st_size if part.exists() else 0
        if got > meta.size:
            part.unlink()
        raise HubUnavailable(f"downloading {filename} from {repo} stopped at {got:,} of {meta.size:,} bytes "
                             f"({_first_line(exc)}); run the command again to resume") from None
    digest = sha256_of(part)
    if SHA256.fullmatch(meta.etag) and digest != meta.etag:
        part.unlink()
        raise CorruptDownload(f"{filename} from {repo} is corrupt: its sha256 is {digest[:12]}…, the hub's is "
                              f"{meta.etag[:12]}…; removed it, run the command again to download it anew")
    os.replace(part, complete)
    return Download(complete, repo, filename, meta.commit_hash, meta.size, digest)
