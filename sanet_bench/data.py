"""Training images: recursive image folders and the paper's crop pipeline, deterministic per iteration.

Layouts: any folder tree of images (MS-COCO ``train2014/*.jpg`` is flat, WikiArt ``wikiart/<movement>/*.jpg``
is one level deep); files are found recursively by extension, hidden files and folders are ignored, and the
list is sorted so the same folder always gives the same order.

Pipeline (Park & Lee 2019, Sec. 4.1): resize so the shorter side is ``load_size`` (512) keeping the aspect
ratio, then a random ``crop`` x ``crop`` (256) window. ``resize="exact"`` resizes to ``load_size`` x
``load_size`` instead, as the reference's ``train_transform`` (``Resize((512, 512))``) does.

Sampling is a pure function of ``(seed, iteration)``: sample ``k = iteration * batch + b`` is item
``k mod n`` of the random permutation number ``k // n`` (an epoch, as the reference's
InfiniteSamplerWrapper), and its crop offset comes from a generator seeded with ``(seed, iteration)``. A
resumed run therefore draws exactly the batches an uninterrupted one would, with no sampler state to save.

Unreadable files (:class:`sanet_bench.errors.ImageError` from :func:`sanet_bench.images.decode`) are
skipped: the next readable file in folder order takes their place, and their paths are returned with the
batch so the trainer can count them.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .errors import ConfigError, ImageError
from .images import load_image
from .io import IMAGE_EXTENSIONS

TRAIN_RESIZE = ("shorter", "exact")


def list_images(root: str | os.PathLike) -> list[Path]:
    """Image files under ``root`` (recursive, sorted, hidden entries skipped)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder; pass a folder of training images (e.g. MS-COCO train2014)")
    files = [
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    if not files:
        raise ConfigError(f"{root}: no images found (looked recursively for {', '.join(IMAGE_EXTENSIONS)})")
    return sorted(files)


def _seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (SplitMix64-style), so nearby inputs give unrelated streams."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (p & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


class CropSource:
    """Random training crops from one image folder; ``batch(iteration)`` is deterministic."""

    def __init__(
        self,
        root: str | os.PathLike,
        batch: int,
        crop: int = 256,
        load_size: int = 512,
        resize: str = "shorter",
        seed: int = 0,
        stream: int = 0,
    ):
        if resize not in TRAIN_RESIZE:
            choices = ", ".join(TRAIN_RESIZE)
            raise ConfigError(f"resize={resize!r} is not a training resize; choose one of {choices}")
        if load_size < crop:
            raise ConfigError(f"load_size={load_size} is smaller than crop={crop}; set load_size >= crop")
        if batch < 1 or crop < 16:
            raise ConfigError(f"batch={batch}, crop={crop}: need batch >= 1 and crop >= 16")
        self.root = Path(root)
        self.files = list_images(root)
        self.batch, self.crop, self.load_size, self.resize = batch, crop, load_size, resize
        self.seed, self.stream = seed, stream
        self._perm: tuple[int, Tensor] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def index(self, k: int) -> int:
        """Folder index of global sample ``k`` (epoch-wise random permutations)."""
        n = len(self.files)
        epoch = k // n
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(_seed(self.seed, self.stream, 1, epoch))
            self._perm = (epoch, torch.randperm(n, generator=g))
        return int(self._perm[1][k % n])

    def _load(self, i: int, skipped: list[str]) -> Tensor:
        n = len(self.files)
        for j in range(n):
            path = self.files[(i + j) % n]
            try:
                return load_image(path, self.load_size, self.resize)[0]
            except ImageError:
                skipped.append(str(path))
        raise ImageError(f"{self.root}: none of its {n} image files is readable; check the folder")

    def batch_at(self, iteration: int) -> tuple[Tensor, list[str]]:
        """The ``[batch, 3, crop, crop]`` crops of ``iteration`` and the paths skipped as unreadable."""
        g = torch.Generator().manual_seed(_seed(self.seed, self.stream, 2, iteration))
        crops, skipped = [], []
        for b in range(self.batch):
            img = self._load(self.index(iteration * self.batch + b), skipped)
            h, w = img.shape[-2:]
            top = int(torch.randint(0, h - self.crop + 1, (1,), generator=g))
            left = int(torch.randint(0, w - self.crop + 1, (1,), generator=g))
            crops.append(img[:, top : top + self.crop, left : left + self.crop])
        return torch.stack(crops), skipped


class PairBatches(Dataset):
    """Map-style dataset whose item ``i`` is iteration ``i``'s (content, style, skipped paths).

    Feed it to ``DataLoader(ds, sampler=range(start, iters), batch_size=None, num_workers=W)``: workers
    prefetch whole batches and the order stays exactly the iteration order.
    """

    def __init__(self, content: CropSource, style: CropSource):
        self.content, self.style = content, style

    def __len__(self) -> int:  # iterations are unbounded; the sampler decides which are drawn
        return 2**62

    def __getitem__(self, iteration: int) -> tuple[Tensor, Tensor, list[str]]:
        c, sc = self.content.batch_at(iteration)
        s, ss = self.style.batch_at(iteration)
        return c, s, sc + ss
