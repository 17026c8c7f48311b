"""A VTAB-1K folder of JPEG files to time the data loader on decoding: Fashion-MNIST's images (10
classes) upscaled to ``--size`` px and saved as JPEGs in the NOAH layout of ``vtab/eurosat`` (a
10-class task), so ``peftbench bench`` can read them as a run would. Timing only: the pictures are
not EuroSAT's, and no result is ever taken from them.

    python benchmarks/jpeg_folder.py /tmp/vtab-jpeg --size 224
    peftbench bench --methods lora --run-task vtab/eurosat --run-options '--data-root /tmp/vtab-jpeg'
"""

import argparse
import sys
from pathlib import Path

from PIL import Image

from peftbench.tasks.vtab_lite import FASHION_FILES, FASHION_HINT, find_fashion_mnist, read_idx

TASK = "eurosat"
TRAIN, VAL, TEST = 800, 200, 1000


def main() -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/jpeg_folder.py", allow_abbrev=False)
    parser.add_argument("root", type=Path)
    parser.add_argument("--size", type=int, default=224, help="side of the saved images, px")
    args = parser.parse_args()
    source = find_fashion_mnist()
    if source is None:
        sys.exit(FASHION_HINT)
    images, labels = (read_idx(source / name) for name in FASHION_FILES["train"])
    folder = args.root / TASK
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(TRAIN + VAL + TEST):
        rel = f"images/{i}.jpg"
        Image.fromarray(images[i]).convert("RGB").resize((args.size, args.size), Image.BICUBIC).save(
            folder / rel, quality=90)
        lines.append(f"{rel} {labels[i]}")
    train, val, test = lines[:TRAIN], lines[TRAIN:TRAIN + VAL], lines[TRAIN + VAL:]
    for name, rows in (("train800", train), ("val200", val), ("train800val200", train + val), ("test", test)):
        (folder / f"{name}.txt").write_text("\n".join(rows) + "\n")
    print(f"{len(lines)} JPEGs of {args.size} px in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
