"""Image files on disk as a lazy dataset of (relative path, label) pairs.

Real test splits hold up to ~30k images (VTAB svhn, FGVC NABirds), so nothing is decoded when a
split is built: checks only open each file's header. An image is decoded on first access, its
deterministic resize is kept in a bounded LRU cache (later epochs skip decoding), and random
augmentation runs on every access, so it still differs from epoch to epoch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path

from typing import TYPE_CHECKING

from PIL import Image

from .errors import UsageError

if TYPE_CHECKING:  # torch comes with the transforms: task plugins load without it
    import torch

#: ~150-260 kB per cached 224-256 px image: at most ~0.5 GB, and a VTAB train800val200 fits.
CACHE_ENTRIES = 2048
#: the VPT/ImageNet eval convention: resize the shorter side to crop / 0.875, then crop.
CROP_RATIO = 0.875


class ImageCache:
    """A least-recently-used map holding at most ``max_entries`` prepared images.

    One cache may serve several datasets (a task's train, val, trainval and test), so the
    images train and trainval share are decoded once and the memory bound holds per task."""

    def __init__(self, max_entries: int = CACHE_ENTRIES):
        self.max_entries = max_entries
        self._items: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, make: Callable):
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = self._items[key] = make()
        if len(self._items) > self.max_entries:
            self._items.popitem(last=False)
        return value


def decode(path: Path) -> Image.Image:
    """The whole image as RGB; a file that fails only now (e.g. truncated) is bad input."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:  # PIL reports bad data with all three
        raise UsageError(f"cannot decode image {path}: {exc}") from None


def check_images(root: Path, items: Iterable[tuple[str, int]], source: str) -> None:
    """Every listed file exists and Pillow recognises its header (cheap: no pixels decoded)."""
    for rel in dict.fromkeys(rel for rel, _ in items):
        path = root / rel
        if not path.is_file():
            raise UsageError(f"missing image {path} (listed in {source})")
        try:
            with Image.open(path):
                pass
        except (OSError, SyntaxError, ValueError) as exc:
            raise UsageError(f"corrupt image {path} (listed in {source}): {exc}") from None


class ImageListDataset:
    """(tensor, label) pairs read from ``root / relative path`` only when indexed (a map-style
    dataset: ``__len__`` and ``__getitem__``, all a DataLoader asks).

    ``prepare`` (PIL -> PIL) must be deterministic: its result is cached. ``transform``
    (PIL -> tensor) runs on every access and may be random."""

    decodes = True  # reading an example decodes its file (peftbench.loading)

    def __init__(self, root: Path, items: list[tuple[str, int]], transform: Callable,
                 prepare: Callable | None = None, cache: ImageCache | None = None):
        self.root = Path(root)
        self.items = list(items)
        self.transform = transform
        self.prepare = prepare
        self.cache = ImageCache() if cache is None else cache

    def __len__(self) -> int:
        return len(self.items)

    def image(self, index: int) -> Image.Image:
        path = self.root / self.items[index][0]
        prepare = self.prepare or (lambda image: image)
        return self.cache.get((path, self.prepare), lambda: prepare(decode(path)))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.image(index)), self.items[index][1]


# torchvision is imported where transforms are built: importing it costs seconds (torch._dynamo),
# and 'peftbench list tasks' imports every suite.

def normalize(mean, std) -> Callable:
    import torch
    from torchvision.transforms import v2 as T

    return T.Compose([T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(list(mean), list(std))])


def squash(image_size: int, mean, std) -> tuple[Callable, Callable]:
    """(prepare, transform) of VTAB-1K (NOAH): bicubic resize to a square, no augmentation."""
    from torchvision.transforms import InterpolationMode, v2 as T

    prepare = T.Resize((image_size, image_size), interpolation=InterpolationMode.BICUBIC)
    return prepare, normalize(mean, std)


def resize_crop(image_size: int, mean, std) -> tuple[Callable, Callable, Callable]:
    """(prepare, train, eval) of FGVC in VPT's code (KMnP/vpt src/data/transforms.py): shorter
    side to size / 0.875 (256 for 224), then a random crop and flip to train, the centre to test.
    One prepare for both, so train and test images share the cache."""
    from torchvision.transforms import v2 as T

    prepare = T.Resize(int(image_size / CROP_RATIO))
    train = T.Compose([T.RandomCrop(image_size), T.RandomHorizontalFlip(), normalize(mean, std)])
    return prepare, train, T.Compose([T.CenterCrop(image_size), normalize(mean, std)])
