"""vtab and fgvc data fetched from the hub, through the real download code.

This machine cannot reach the hub, so a local HTTP server stands in for it: it answers the HEAD
and GET requests huggingface_hub makes on ``/datasets/{repo}/resolve/{revision}/{file}`` (with
X-Repo-Commit, ETag, Content-Length and Range), and serves small archives in the real layouts.
``HF_ENDPOINT`` points at it; huggingface_hub's offline flag, read once at import, is lifted.
"""

import hashlib
import io
import json
import re
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from conftest import MEAN, STD, make_vtab, save_digit, tiny_run
from huggingface_hub import constants  # now, not inside a test: its log handler keeps the stderr it first sees

from peftbench import hubdata
from peftbench.cli import main
from peftbench.errors import UsageError
from peftbench.tasks import fgvc, vtab

COMMIT = "0123456789abcdef0123456789abcdef01234567"
VTAB_FILE = "XiN0919/VTAB-1k/vtab-1k.zip"


class FakeHub:
    """What the server serves and what it was asked; fault switches for the next GET."""

    def __init__(self):
        self.files: dict[str, bytes] = {}  # "owner/repo/file" -> bytes
        self.etags: dict[str, str] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, "owner/repo/file", Range)
        self.cut_after: int | None = None  # the next GET sends this many bytes, then drops the connection
        self.fail_after_cut = False  # and every GET after it answers 503 (the hub went away)
        self.failing = False

    def add(self, key: str, data: bytes, etag: str | None = None) -> None:
        self.files[key] = data
        self.etags[key] = etag or hashlib.sha256(data).hexdigest()  # an LFS file's ETag is its sha256

    def asked(self, method: str = "GET") -> list[str]:
        return [key for m, key, _ in self.requests if m == method]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle keep-alive connection ends by itself

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.answer(body=False)

    def do_GET(self):
        self.answer(body=True)

    def reply(self, status: int, headers: dict, body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def answer(self, body: bool) -> None:
        hub: FakeHub = self.server.hub
        found = re.fullmatch(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", unquote(urlparse(self.path).path))
        key = f"{found.group(1)}/{found.group(3)}" if found else self.path
        hub.requests.append((self.command, key, self.headers.get("Range")))
        if listing := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/tree/[^/]+/?", urlparse(self.path).path):
            held = [{"type": "file", "path": k.split("/", 2)[2], "size": len(v), "oid": hub.etags[k]}
                    for k, v in hub.files.items() if k.startswith(listing.group(1) + "/")]
            return self.reply(200, {"Content-Type": "application/json"}, json.dumps(held).encode())
        if key not in hub.files:
            return self.reply(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
        if body and hub.failing:
            return self.reply(503, {})
        data = hub.files[key]
        start = int(re.fullmatch(r"bytes=(\d+)-", self.headers["Range"]).group(1)) if self.headers["Range"] else 0
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hub.etags[key]}"', "Accept-Ranges": "bytes"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self.send_response(206 if start else 200)
        for name, value in {**headers, "Content-Length": str(len(data) - start)}.items():
            self.send_header(name, value)
        self.end_headers()
        if not body:
            return
        if hub.cut_after is not None:  # promise the whole file, send part of it, hang up
            self.wfile.write(data[start:start + hub.cut_after])
            self.wfile.flush()
            hub.cut_after, hub.failing = None, hub.fail_after_cut
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data[start:])


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A hub on 127.0.0.1 at an ephemeral port, for one test; the cache is the test's own. huggingface_hub
    writes a download in chunks of 10 MB, larger than these archives: 1 kB here, so a cut keeps what came."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.hub = FakeHub()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path / "cache"))
    yield server.hub
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def offline_cache(monkeypatch, tmp_path):
    """An empty cache and the hub offline (conftest sets HF_HUB_OFFLINE=1)."""
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path / "cache"))


# ---- archives in the real layouts ---------------------------------------------------------------

def zipped(folder: Path) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(folder.parent).as_posix())
    return out.getvalue()


def tarred(folder: Path, extra: dict[str, bytes] = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as t:
        for path in sorted(folder.iterdir()):
            t.add(path, path.name)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture(scope="session")
def vtab_source(tmp_path_factory) -> Path:
    """``vtab-1k/<task>/`` for all 19 tasks, NOAH layout, VTAB-1K's split sizes and class counts."""
    source = tmp_path_factory.mktemp("vtab") / "vtab-1k"
    for name, _, classes in vtab.TASKS:
        make_vtab(source, name, classes=classes, sizes=(800, 200, 30))
    return source


@pytest.fixture(scope="session")
def vtab_zip(vtab_source) -> bytes:
    return zipped(vtab_source)


def data_folders(cache: Path) -> list[str]:
    """Everything under <cache>/data but the download lock files."""
    return sorted(p.relative_to(cache / "data").as_posix() for p in (cache / "data").rglob("*")
                  if not p.name.endswith(".lock"))


# ---- fetching ----------------------------------------------------------------------------------

def test_fetch_unpacks_verifies_and_records_each_task(hub, vtab_zip, tmp_path, capsys):
    hub.add(VTAB_FILE, vtab_zip)
    assert main(["data", "fetch", "vtab"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 19 and "vtab/dtd: ok, 800 / 200 / 1,000 / 30 images" in out
    root = tmp_path / "cache" / "data" / "vtab-1k"
    record = json.loads((root / "dtd" / hubdata.MARKER).read_text())
    assert record["sha256"] == hashlib.sha256(vtab_zip).hexdigest()
    assert (record["repo"], record["commit"], record["classes"]) == ("XiN0919/VTAB-1k", COMMIT, 47)
    assert record["splits"] == {"train": 800, "val": 200, "trainval": 1000, "test": 30}
    assert not list(hubdata.downloads().rglob("vtab-1k.zip*"))  # all 19 in: the archive goes
    assert not list((tmp_path / "cache" / "data").glob(".vtab-1k-*"))
    splits = vtab.VTAB.tasks[2].load(16, MEAN, STD, None)  # dtd from the cache, no --data-root
    assert (len(splits.train), len(splits.val), len(splits.trainval), len(splits.test)) == (800, 200, 1000, 30)
    hub.requests.clear()
    assert hubdata.ensure("vtab", "cifar") == root and hub.requests == []  # cached: the hub is not asked again


def test_an_interrupted_download_resumes_where_it_stopped(hub, vtab_zip, tmp_path, capsys):
    hub.add(VTAB_FILE, vtab_zip)
    hub.cut_after, hub.fail_after_cut = 5120, True
    assert main(["data", "fetch", "vtab/dtd"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after huggingface_hub's own warnings
    assert err.startswith("peftbench: error: cannot fetch vtab: downloading vtab-1k.zip from XiN0919/VTAB-1k")
    assert f"stopped at 5,120 of {len(vtab_zip):,} bytes" in err and "run the command again to resume" in err
    parts = list(hubdata.downloads().rglob("vtab-1k.zip.*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == 5120
    assert hubdata.installed("vtab", "dtd") is None
    assert main(["data", "list"]) == 0
    assert "unfinished download" in capsys.readouterr().out.splitlines()[-1]
    hub.failing = False
    assert main(["data", "fetch", "vtab/dtd"]) == 0
    assert [r for m, _, r in hub.requests if m == "GET"][-1] == "bytes=5120-"  # only the rest was sent
    assert hubdata.installed("vtab", "dtd")["sha256"] == hashlib.sha256(vtab_zip).hexdigest()


def test_a_dropped_connection_is_resumed_within_the_fetch(hub, vtab_zip):
    hub.add(VTAB_FILE, vtab_zip)
    hub.cut_after = 7168
    assert hubdata.ensure("vtab", "eurosat") == hubdata.root("vtab")
    assert [r for m, _, r in hub.requests if m == "GET"] == [None, "bytes=7168-"]
    assert hubdata.installed("vtab", "eurosat")["sha256"] == hashlib.sha256(vtab_zip).hexdigest()


def flipped(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:]


@pytest.mark.parametrize("served, etag, said", [
    ("garbled", "good", "its sha256 is"),  # the bytes are not the file the hub describes
    ("garbled", "served", "is corrupt ("),  # the file on the hub is itself a corrupt zip (a bad CRC)
    ("not a zip", "served", "neither a zip nor a tar"),
], ids=["hash mismatch", "corrupt zip", "not an archive"])
def test_a_corrupt_archive_is_refused_and_removed(hub, vtab_zip, tmp_path, capsys, served, etag, said):
    data = flipped(vtab_zip) if served == "garbled" else b"<html>not found</html>" * 100
    hub.add(VTAB_FILE, data, etag=hashlib.sha256(vtab_zip if etag == "good" else data).hexdigest())
    assert main(["data", "fetch", "vtab/dtd"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the line saying it unpacks
    assert err.startswith("peftbench: error: cannot fetch vtab: vtab-1k.zip from XiN0919/VTAB-1k is corrupt")
    assert said in err and "removed it" in err
    # no archive, no partial unpack, no task
    assert data_folders(tmp_path / "cache") == ["downloads", "downloads/XiN0919--VTAB-1k"]


@pytest.mark.parametrize("breaks, said", [
    (lambda task: (task / "val200.txt").write_text("\n".join((task / "val200.txt").read_text().splitlines()[1:])),
     r"val200\.txt \(the val split\) lists 199 images, VTAB-1K's val split has 200"),
    (lambda task: (task / "images" / "3.jpg").unlink(), r"images/3\.jpg of the train split \(listed in .*train800"),
], ids=["short split", "missing image"])
def test_a_task_failing_verification_says_which_file_and_split(hub, vtab_source, tmp_path, breaks, said):
    import shutil

    source = tmp_path / "src" / "vtab-1k"
    shutil.copytree(vtab_source, source)
    breaks(source / "eurosat")
    hub.add(VTAB_FILE, zipped(source))
    with pytest.raises(UsageError, match=f"vtab/eurosat: .*{said}") as err:
        hubdata.ensure("vtab", "eurosat")
    assert "\n" not in str(err.value)
    assert hubdata.installed("vtab", "eurosat") is None and not (hubdata.root("vtab") / "eurosat").exists()
    assert hubdata.installed("vtab", "dtd") is not None  # the others verified and went in
    kept = list(hubdata.downloads().rglob("vtab-1k.zip.*"))
    assert len(kept) == 1 and kept[0].suffix != ".part"  # kept whole: a retry need not download it again
    assert not list(hubdata.data_dir().glob(".vtab-1k-*"))


# ---- FGVC ---------------------------------------------------------------------------------------

#: dataset -> (its split folder in json.zip, its archive's top folder, image keys, class id of the i-th class)
FGVC_HUB = {
    "flowers": ("OxfordFlower", "", lambda i: f"jpg/image_{i:05d}.jpg", lambda c: c + 1),
    "cub": ("CUB_200_2011", "CUB_200_2011/images/", lambda i: f"{i % 200 + 1:03d}.Bird/Bird_{i}.jpg",
            lambda c: str(c + 1)),
}


@pytest.fixture
def fgvc_hub(hub, tmp_path):
    """json.zip with the split files of flowers and cub, and each dataset's image archive."""
    splits = tmp_path / "fgvc-src" / "json"
    for name, (folder, top, key, label) in FGVC_HUB.items():
        classes, index = dict((d[0], d[1]) for d in fgvc.DATASETS)[name], 0
        images = tmp_path / "fgvc-src" / name
        for split, n in (("train", classes), ("val", 5), ("test", 7)):
            entries = {}
            for _ in range(n):
                entries[key(index)] = label(index % classes)
                save_digit(images / top / key(index), index % 10)
                index += 1
            (splits / folder).mkdir(parents=True, exist_ok=True)
            (splits / folder / f"{split}.json").write_text(json.dumps(entries))
        extra = {"attributes.txt": b"not an image"} if name == "cub" else {}
        hub.add(f"XiN0919/FGVC/{fgvc.HUB_FILES[name][0]}", tarred(images, extra))
    hub.add("XiN0919/FGVC/json.zip", zipped(splits))
    return hub


@pytest.mark.parametrize("name, image_dir", [("flowers", "jpg"), ("cub", "images")])
def test_fgvc_fetches_only_the_asked_dataset_in_the_layout_fgvc_reads(fgvc_hub, tmp_path, capsys, name, image_dir):
    assert main(["data", "fetch", f"fgvc/{name}"]) == 0
    assert f"fgvc/{name}: ok" in capsys.readouterr().out
    assert fgvc_hub.asked() == ["XiN0919/FGVC/json.zip", f"XiN0919/FGVC/{fgvc.HUB_FILES[name][0]}"]
    folder = tmp_path / "cache" / "data" / "fgvc" / name
    assert sorted(p.name for p in folder.iterdir()) == sorted([hubdata.MARKER, image_dir, "test.json", "train.json",
                                                               "val.json"])
    record = json.loads((folder / hubdata.MARKER).read_text())
    assert record["archive"] == fgvc.HUB_FILES[name][0] and record["split_files"]["archive"] == "json.zip"
    task = next(t for t in fgvc.FGVC.tasks if t.name == name)
    assert len(task.load(16, MEAN, STD, None).test) == 7  # the loader reads the cache without --data-root
    assert main(["data", "verify", f"fgvc/{name}"]) == 0
    assert "sha256" in capsys.readouterr().out


def test_an_fgvc_archive_of_another_layout_is_reported(fgvc_hub, tmp_path):
    fgvc_hub.add("XiN0919/FGVC/102flowers.tgz", tarred(tmp_path / "fgvc-src" / "cub"))  # the wrong images
    with pytest.raises(UsageError, match=r"fgvc/flowers: 102flowers\.tgz .* does not hold jpg/image_00000\.jpg"):
        hubdata.ensure("fgvc", "flowers")
    assert hubdata.installed("fgvc", "flowers") is None
    assert not list(hubdata.data_dir().glob(".fgvc-*"))


# ---- the data command, offline, --data-root ------------------------------------------------------

def test_an_archive_missing_from_the_hub_is_named_with_what_the_repository_holds(fgvc_hub, capsys):
    del fgvc_hub.files["XiN0919/FGVC/102flowers.tgz"]  # as if the repository named it otherwise
    assert main(["data", "fetch", "fgvc/flowers"]) == 1  # a task that failed, as any fetch failure
    said = capsys.readouterr().out.strip().splitlines()
    assert len(said) == 1 and "has no 102flowers.tgz in the dataset repository XiN0919/FGVC" in said[0]
    assert said[0].endswith("(it holds CUB_200_2011.tgz, json.zip)"), said


def test_data_list_shows_each_suite_present_or_not_where_and_size(fgvc_hub, tmp_path, capsys):
    assert main(["data", "fetch", "fgvc/flowers"]) == 0
    capsys.readouterr()
    assert main(["data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("vtab  absent") and "peftbench data fetch vtab" in lines[0]
    assert lines[1].startswith("fgvc  partly: 1 of 5, missing cub, nabird, dogs, cars")
    assert " kB " in lines[1] and str(tmp_path / "cache" / "data" / "fgvc") in lines[1]


@pytest.mark.parametrize("tasks, command", [("vtab", "peftbench data fetch vtab"),
                                            ("vtab-natural", "peftbench data fetch vtab"),
                                            ("fgvc/flowers", "peftbench data fetch fgvc/flowers")])
def test_offline_a_run_stops_before_any_model_with_one_line(offline_cache, monkeypatch, capsys, tasks, command):
    from peftbench import plan

    monkeypatch.setattr(plan.Planner, "__init__", lambda *a, **k: pytest.fail("planned a run with no data"))
    assert main(["run", "--methods", "hora,lora", "--tasks", tasks]) == 2
    err = capsys.readouterr().err.strip()
    assert command in err and "--data-root" in err and "offline" in err and "\n" not in err


def test_an_unreachable_hub_stops_a_run_with_one_line(offline_cache, monkeypatch, capsys):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    assert main(["run", "--methods", "lora", "--tasks", "vtab/dtd"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot reach the hub" in err and "peftbench data fetch vtab" in err and "--data-root" in err


def test_data_root_wins_and_is_verified_by_the_command(offline_cache, tmp_path, capsys):
    hubdata.require("vtab,fgvc/cub", str(tmp_path))  # offline, nothing cached: no complaint with --data-root
    make_vtab(tmp_path / "mine", "dtd", classes=47, sizes=(800, 200, 5))
    make_vtab(tmp_path / "mine", "eurosat", classes=10, sizes=(800, 199, 5))
    assert main(["data", "verify", "vtab/dtd,vtab/eurosat", "--data-root", str(tmp_path / "mine")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("vtab/dtd: ok") and "val200.txt (the val split) lists 199 images" in out[1]
    assert main(["data", "fetch", "quick"]) == 2  # only vtab and fgvc are fetched


@pytest.mark.slow
def test_a_run_without_data_root_fetches_and_trains(hub, vtab_zip, tmp_path):
    """The command users run first, on the tiny backbone: the data comes from the hub, then it trains."""
    hub.add(VTAB_FILE, vtab_zip)
    assert main(tiny_run("linear", tasks="vtab/dtd", store=tmp_path / "results.db")) == 0
    assert hubdata.installed("vtab", "dtd") is not None and hub.asked("GET") == [VTAB_FILE]


def test_the_plan_comes_before_the_download_and_a_dry_run_downloads_nothing(hub, vtab_zip, tmp_path, monkeypatch,
                                                                             capsys):
    monkeypatch.setenv("PEFTBENCH_ESTIMATE", "1")  # the plan's timed steps, on blank images of the split sizes
    hub.add(VTAB_FILE, vtab_zip)
    assert main([*tiny_run("linear", tasks="vtab/dtd", store=tmp_path / "results.db"), "--dry-run"]) == 0
    said = capsys.readouterr().err
    size = len(vtab_zip) / 1e9
    assert f"first downloads {size:.1f} GB (XiN0919/VTAB-1k/vtab-1k.zip)" in said and "estimate:" in said
    assert hub.asked("GET") == [] and hubdata.installed("vtab", "dtd") is None
