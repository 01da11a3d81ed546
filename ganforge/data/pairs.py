"""Image pairs for translation families: each item is (A, B) stacked along the channels, (2C, H, W) in [-1, 1].

Stacking keeps one batch type for every family (the loop and ``BatchSource`` need no change), and a crop or a
flip applied to the stacked tensor is applied identically to A and B. Sources:

- ``digits-sr``, ``digits-inpaint``, ``digits-edges``: A = the degraded digit (``digit_tasks``), B = the digit,
  32x32; ``digits-thin2thick``: A = digits as they are, B = thickened digits, taken from disjoint halves of the
  split with the same classes (even and odd ranks within each class, ``class_halves``) and paired by a fixed
  permutation, so A and B are unpaired. Labels: A's class.
- ``paired:DIR``: side-by-side ``A|B`` images, or ``A/`` and ``B/`` folders with matching file names; in
  ``DIR/train``, ``DIR/test`` (or ``DIR/val``) when those exist (the pix2pix datasets' layout).
- ``unpaired:DIR``: ``trainA/ trainB/ testA/ testB/`` (the CycleGAN datasets' layout); item i is
  (A[i mod nA], B[perm(i) mod nB]) with a fixed permutation, over max(nA, nB) items.

``direction="BtoA"`` swaps the halves.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from ganforge.data import digit_tasks, embedded, folder
from ganforge.data.base import GanDataset, TensorGanDataset
from ganforge.data.imageops import Size, as_hw, batch_to_tensor, check_pixels, pil_to_tensor, upright
from ganforge.errors import DataError

DIGIT_SPECS = ("digits-sr", "digits-inpaint", "digits-edges", "digits-thin2thick")
PAIRED_PREFIX, UNPAIRED_PREFIX = "paired:", "unpaired:"
KNOWN_SETS = {  # folder name -> where to get it (the pix2pix and CycleGAN authors' mirrors)
    "facades": "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz",
    "maps": "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/maps.tar.gz",
    "summer2winter_yosemite": "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/summer2winter_yosemite.zip",
    "horse2zebra": "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip",
}
PERM_SEED = 20_161_121  # the fixed pairing of unpaired sets (never the run's seed: the data must not change)


def split_halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2C, H, W) pairs -> A (N, C, H, W), B (N, C, H, W)."""
    c = x.shape[1] // 2
    return x[:, :c], x[:, c:]



def is_translation_spec(spec: str) -> bool:
    s = spec.strip().lower()
    return s in DIGIT_SPECS or s.startswith((PAIRED_PREFIX, UNPAIRED_PREFIX))


def build(spec: str, root: str, channels: int, size: Size, limit: Optional[int], split: str,
          direction: str = "AtoB", scan: Optional[bool] = None) -> GanDataset:
    s = spec.strip()
    if s.lower() in DIGIT_SPECS:
        ds = build_digits(s.lower(), channels, size, limit, split)
    elif s.lower().startswith(PAIRED_PREFIX):
        ds = PairedFolder(_path(s, PAIRED_PREFIX), channels, size, split, limit, scan)
    else:
        ds = UnpairedFolder(_path(s, UNPAIRED_PREFIX), channels, size, split, limit, scan)
    if direction == "BtoA":
        ds.swap()
    return ds


def _path(spec: str, prefix: str) -> Path:
    path = spec[len(prefix):].strip()
    if not path:
        raise DataError(f"--data {spec!r} names no folder: write --data {prefix}DIR")
    return Path(path).expanduser()


def _missing(path: Path, layout: str) -> DataError:
    url = KNOWN_SETS.get(path.name)
    where = f": download {url} and extract it so that {path} holds {layout}" if url else f": it should hold {layout}"
    return DataError(f"folder {path} does not exist{where}")


class _Swappable:
    swapped = False
    unpaired = False  # A and B are independent draws (cyclegan data; pix2pix refuses them)

    def swap(self) -> None:
        self.swapped = not self.swapped
        if getattr(self, "tensor", None) is not None:
            a, b = split_halves(self.tensor)
            self.tensor = torch.cat([b, a], dim=1).contiguous()


class DigitPairs(_Swappable, TensorGanDataset):
    pass


def class_halves(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of two disjoint halves with the same classes: within each class, the digits of even rank go to
    the first half and those of odd rank to the second, each half in the digits' order. (Even and odd positions
    would split the classes themselves: the embedded digits are interleaved 0, 1, ..., 9, 0, 1, ...)"""
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx] = np.arange(idx.size)
    return np.flatnonzero(rank % 2 == 0), np.flatnonzero(rank % 2 == 1)


def build_digits(name: str, channels: int, size: Size, limit: Optional[int], split: str) -> DigitPairs:
    images, labels = embedded.load_raw()
    if split != "all":
        keep = embedded.heldout_split()[0 if split == "train" else 1]
        images, labels = images[keep], labels[keep]
    digits = np.pad(images, ((0, 0), (2, 2), (2, 2)))  # the padded 32x32 digits every task starts from
    task = name.split("-", 1)[1]
    if task == "thin2thick":
        in_a, in_b = class_halves(labels)
        a, b = digits[in_a], digit_tasks.apply(digit_tasks.thicken, digits[in_b])
        n = min(len(a), len(b))
        perm = np.random.RandomState(PERM_SEED).permutation(n)
        a, b, labels = a[:n], b[perm], labels[in_a][:n]
    else:
        a, b = digit_tasks.apply(digit_tasks.PAIRED[task], digits), digits
    if limit is not None:
        a, b, labels = a[:limit], b[:limit], labels[:limit]

    def tensor(u8: np.ndarray) -> torch.Tensor:
        return batch_to_tensor(torch.from_numpy(np.ascontiguousarray(u8)).unsqueeze(1), channels, size)

    ds = DigitPairs(name, "pairs", torch.cat([tensor(a), tensor(b)], dim=1), torch.from_numpy(labels.copy()),
                    num_classes=10)
    ds.unpaired = task == "thin2thick"
    ds.prep = "28x28 digits padded to 32x32" + ("" if size in (32, (32, 32)) else f", resized to {size}")
    return ds


def _pick_split(path: Path, split: str) -> Path:
    """DIR/train or DIR/test (DIR/val when there is no test) when those exist, else DIR itself."""
    names = {"train": ["train"], "all": ["train"], "test": ["test", "val"]}[split]
    for name in names:
        if (path / name).is_dir():
            return path / name
    if split == "test" and (path / "train").is_dir():
        raise DataError(f"{path} has train/ but no test/ or val/ folder: add one, or use data.split=train")
    return path


def _readable(path: Path, scan: Optional[bool]) -> tuple[list[str], list[str]]:
    paths = folder.list_images(path)
    if scan or (scan is None and len(paths) <= folder.SCAN_MAX_FILES):
        return folder.scan_folder(path)
    return paths, []


class PairedFolder(_Swappable, GanDataset):
    """Pairs read from disk on access: side-by-side A|B images, or A/ and B/ with matching names."""

    def __init__(self, path: Path, channels: int, size: Size, split: str, limit: Optional[int],
                 scan: Optional[bool]):
        if not path.is_dir():
            raise _missing(path, "train/ and test/ (or val/) folders of side-by-side A|B images")
        if (path / "trainA").is_dir() or (path / "trainB").is_dir():
            raise DataError(f"{path} is an unpaired set (trainA/ trainB/): train on it with --data unpaired:{path} "
                            "and family cyclegan, or give pix2pix side-by-side A|B images or A/ and B/ folders")
        self.root = _pick_split(path, split)
        self.channels, self.size = channels, size
        if (self.root / "A").is_dir() and (self.root / "B").is_dir():
            items, skipped = self._matched(scan)
        else:
            good, skipped = _readable(self.root, scan)
            items = [(p, None) for p in good]
        super().__init__(f"{PAIRED_PREFIX}{path}", "pairs", (2 * channels, *_hw(size)), None)
        self.items: list[tuple[str, Optional[str]]] = items[:limit]
        self.skipped = skipped  # unreadable, or without a partner: skipped and counted

    def _matched(self, scan: Optional[bool]) -> tuple[list[tuple[str, Optional[str]]], list[str]]:
        a_good, a_bad = _readable(self.root / "A", scan)
        b_good, b_bad = _readable(self.root / "B", scan)
        b_by_name = {os.path.relpath(p, self.root / "B"): p for p in b_good}
        items = [(p, b_by_name[os.path.relpath(p, self.root / "A")]) for p in a_good
                 if os.path.relpath(p, self.root / "A") in b_by_name]
        if not items:
            raise DataError(f"{self.root}/A and {self.root}/B share no file names: a paired set needs B/x.png for "
                            "every A/x.png (for unpaired domains use --data unpaired:DIR and family cyclegan)")
        a_names = {os.path.relpath(p, self.root / "A") for p in a_good}
        lonely = [p for p in b_good if os.path.relpath(p, self.root / "B") not in a_names]
        lonely += [p for p in a_good if os.path.relpath(p, self.root / "A") not in b_by_name]
        return items, a_bad + b_bad + lonely

    def __len__(self) -> int:
        return len(self.items)

    @property
    def paths(self) -> list[str]:
        """Every file read, for the resume fingerprint."""
        return [p for pair in self.items for p in pair if p is not None]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        a_path, b_path = self.items[index]
        if b_path is None:
            with Image.open(a_path) as img:
                img = upright(check_pixels(img))
                img.load()
                w, h = img.size
                if w < 2:
                    raise DataError(f"{a_path} is {w} px wide: a side-by-side A|B image needs two halves")
                a, b = img.crop((0, 0, w // 2, h)), img.crop((w // 2, 0, 2 * (w // 2), h))
                pair = [pil_to_tensor(a, self.channels, self.size), pil_to_tensor(b, self.channels, self.size)]
        else:
            pair = [folder.load_image(a_path, self.channels, self.size),
                    folder.load_image(b_path, self.channels, self.size)]
        if self.swapped:
            pair.reverse()
        return torch.cat(pair, dim=0), -1


class UnpairedFolder(_Swappable, GanDataset):
    """trainA/ trainB/ (testA/ testB/): two domains, read on access, in a fixed pairing."""

    unpaired = True

    def __init__(self, path: Path, channels: int, size: Size, split: str, limit: Optional[int],
                 scan: Optional[bool]):
        prefix = "test" if split == "test" else "train"
        layout = "trainA/ trainB/ testA/ testB/ folders of images"
        if not path.is_dir():
            raise _missing(path, layout)
        dirs = [path / f"{prefix}A", path / f"{prefix}B"]
        for d in dirs:
            if not d.is_dir():
                raise DataError(f"{path} has no {d.name}/ folder: an unpaired set holds {layout}")
        (a_good, a_bad), (b_good, b_bad) = (_readable(d, scan) for d in dirs)
        self.a, self.b = a_good[:limit], b_good[:limit]
        self.channels, self.size = channels, size
        n = max(len(self.a), len(self.b))
        self.perm = np.random.RandomState(PERM_SEED).permutation(n)
        super().__init__(f"{UNPAIRED_PREFIX}{path}", "pairs", (2 * channels, *_hw(size)), None)
        self.skipped = a_bad + b_bad

    def __len__(self) -> int:
        return len(self.perm)

    @property
    def paths(self) -> list[str]:
        return self.a + self.b

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        pair = [folder.load_image(self.a[index % len(self.a)], self.channels, self.size),
                folder.load_image(self.b[self.perm[index] % len(self.b)], self.channels, self.size)]
        if self.swapped:
            pair.reverse()
        return torch.cat(pair, dim=0), -1


def _hw(size: Size) -> tuple[int, int]:
    return as_hw(size)
