"""What benchmarks/gpu_check.sh needs on a machine without network, as shell assignments to eval.

    python benchmarks/gpu_fixture.py OUT BACKBONE [TASK]

- DATA_ROOT: $VTAB_ROOT where it holds TASK's folder, else a synthetic folder under OUT in the
  NOAH layout with VTAB-1K's sizes (800 train, 200 val, 1,000 test JPEGs, 64 px like EuroSAT's).
- HF_HUB_CACHE: only where a ``timm:`` backbone's weights cannot be loaded offline: a cache under
  OUT holding random weights of the same architecture. Step times and memory do not depend on the
  weights; accuracy does, so it means nothing then (the script says so).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

SIZES = {"train800": 800, "val200": 200, "test": 1000}
CLASSES = {"eurosat": 10, "patch_camelyon": 2, "dtd": 47}


def synthetic_task(root: Path, task: str) -> Path:
    """One VTAB-1K task folder of distinct, class-tinted noise images."""
    import numpy as np
    from PIL import Image

    folder = root / task
    if (folder / "test.txt").exists():
        return root
    classes, rng = CLASSES.get(task, 10), np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lists = {}
    for split, n in SIZES.items():
        rows = []
        for i in range(n):
            label = i % classes
            tint = np.array([label * 25 % 256, label * 70 % 256, label * 140 % 256])
            pixels = np.clip(rng.normal(tint, 40, (64, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / "images" / f"{split}_{i}.jpg", quality=90)
            rows.append(f"images/{split}_{i}.jpg {label}")
        lists[split] = rows
    lists["train800val200"] = lists["train800"] + lists["val200"]
    for name, rows in lists.items():
        (folder / f"{name}.txt").write_text("\n".join(rows) + "\n")
    return root


def loads_offline(model: str) -> bool:
    import timm

    try:
        timm.create_model(model, pretrained=True, num_classes=0)
        return True
    except Exception:  # noqa: BLE001 - no network and no cached weights, whatever timm raises
        return False


def stand_in_weights(model: str, hub: Path) -> None:
    """Random weights of ``model`` where timm looks for its pretrained ones (a Hugging Face hub cache)."""
    import timm
    from safetensors.torch import save_file

    net = timm.create_model(model, pretrained=False)
    repo, commit = net.pretrained_cfg["hf_hub_id"], "0" * 40
    folder = hub / f"models--{repo.replace('/', '--')}"
    (folder / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()},
              folder / "snapshots" / commit / "model.safetensors")
    (folder / "refs" / "main").write_text(commit)


def main(out: str, backbone: str, task: str = "eurosat") -> None:
    out_dir = Path(out).resolve()
    given = os.environ.get("VTAB_ROOT")
    root = Path(given) if given and (Path(given) / task).is_dir() else synthetic_task(out_dir / "vtab", task)
    print(f"DATA_ROOT={shlex.quote(str(root))}")
    print(f"echo 'data: {'VTAB_ROOT' if root == Path(given or '') else 'a synthetic VTAB-1K-shaped'} {task}'")
    if backbone.startswith("timm:") and not loads_offline(backbone[5:]):
        hub = out_dir / "hub"
        stand_in_weights(backbone[5:], hub)
        print(f"export HF_HUB_CACHE={shlex.quote(str(hub))}")
        print(f"echo 'weights: random stand-ins for {backbone} (no network, none cached): speed and memory hold, "
              f"accuracy means nothing'")


if __name__ == "__main__":
    main(*sys.argv[1:])
