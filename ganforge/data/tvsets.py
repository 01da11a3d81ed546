"""torchvision's standard sets (mnist, fashion-mnist, cifar10, svhn, celeba) read from ``data.root``.

The sets torchvision keeps in memory as one uint8 array are converted to a single float tensor up front when
that fits in ``TENSOR_BUDGET_BYTES`` (training then indexes batches, no DataLoader); CelebA, and anything larger,
is decoded per item through the same PIL pipeline as folders.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from ganforge.data.base import GanDataset, TensorGanDataset
from ganforge.data.imageops import Size, as_hw, batch_note, batch_to_tensor, per_image_note, pil_to_tensor
from ganforge.errors import DataError

TENSOR_BUDGET_BYTES = 1 << 30  # 1 GiB: MNIST at 64 px, CIFAR-10 and SVHN at 32 px fit

NUM_CLASSES: dict[str, Optional[int]] = {"mnist": 10, "fashion-mnist": 10, "cifar10": 10, "svhn": 10, "celeba": None}
NAMES = tuple(NUM_CLASSES)


def _constructor(name: str, test: bool = False) -> Callable[..., Any]:
    from torchvision import datasets as tvd  # imported lazily: torchvision adds ~1 s to every CLI start

    if name == "mnist":
        return lambda root, download: tvd.MNIST(root, train=not test, download=download)
    if name == "fashion-mnist":
        return lambda root, download: tvd.FashionMNIST(root, train=not test, download=download)
    if name == "cifar10":
        return lambda root, download: tvd.CIFAR10(root, train=not test, download=download)
    if name == "svhn":
        return lambda root, download: tvd.SVHN(root, split="test" if test else "train", download=download)
    if name == "celeba":
        return lambda root, download: tvd.CelebA(root, split="train", target_type=[], download=download)
    raise ValueError(name)


def open_torchvision(name: str, root: str, download: bool, test: bool = False) -> Any:
    """The torchvision dataset object, with its 'not found' and download failures turned into one-line DataErrors."""
    make = _constructor(name, test)
    try:
        return make(root, download)
    except (RuntimeError, OSError, ValueError) as exc:
        shown_root = root.rstrip("/") + "/"
        if not download:
            raise DataError(
                f"dataset '{name}' not found under {shown_root}: run 'ganforge train ... --data {name} --download' "
                "(or pass --data-root DIR where it lives)"
            ) from exc
        reason = " ".join(str(exc).split())
        raise DataError(
            f"could not download dataset '{name}' into {shown_root}: {reason} "
            "(check the network, or fetch the files by hand and pass --data-root DIR)"
        ) from exc


def _in_memory_images(ds: Any) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """uint8 (N, C, H, W) images and int64 labels when torchvision already holds the whole set in memory."""
    data = getattr(ds, "data", None)
    if data is None:
        return None
    images = torch.as_tensor(np.asarray(data))
    if images.dtype != torch.uint8:
        return None
    if images.ndim == 3:  # MNIST-like (N, H, W)
        images = images.unsqueeze(1)
    elif images.ndim == 4 and images.shape[-1] == 3:  # CIFAR (N, H, W, 3)
        images = images.permute(0, 3, 1, 2)
    elif not (images.ndim == 4 and images.shape[1] == 3):  # SVHN is already (N, 3, H, W)
        return None
    targets = getattr(ds, "targets", None)
    if targets is None:
        targets = getattr(ds, "labels", None)
    if targets is None:
        return None
    return images, torch.as_tensor(np.asarray(targets), dtype=torch.long)


class TorchvisionDataset(GanDataset):
    """A torchvision set decoded per item (PIL image -> shared pipeline)."""

    def __init__(self, name: str, ds: Any, channels: int, size: Size, limit: Optional[int]) -> None:
        h, w = as_hw(size)
        super().__init__(name, "images", (channels, h, w), NUM_CLASSES[name])
        self.ds, self.channels, self.size = ds, channels, (h, w)
        self.prep = per_image_note(size)
        self.length = len(ds) if limit is None else min(limit, len(ds))
        self.index: Optional[list[int]] = None  # data.limit / data.classes: the source items kept, in order
        self.targets: Optional[list[int]] = None  # ... and their remapped labels

    def take(self, index: torch.Tensor, labels: Optional[torch.Tensor]) -> None:
        self.index, self.length = index.tolist(), len(index)
        self.targets = labels.tolist() if labels is not None else None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images")
        i = index % self.length
        img, target = self.ds[self.index[i] if self.index is not None else i]
        label = int(target) if self.num_classes is not None else -1
        if self.targets is not None:
            label = self.targets[i]
        return pil_to_tensor(img, self.channels, self.size), label


def build(name: str, root: str, download: bool, channels: int, size: Size, limit: Optional[int],
          test: bool = False, subset: Any = None) -> GanDataset:
    """``test``: the set's test split instead of its training split. ``subset`` (``subset.Subset``): the
    training subset, drawn on the labels before any image is converted."""
    ds = open_torchvision(name, str(Path(root).expanduser()), download, test)
    mem = _in_memory_images(ds)
    pick = None
    if subset is not None:
        labels = mem[1] if mem is not None else _targets(ds, name)
        pick = subset.pick(labels, None, len(ds), name, NUM_CLASSES[name])
    if mem is not None:
        images, labels = mem
        if pick is not None:
            images = images[pick.index]
            labels = pick.labels if pick.labels is not None else labels[pick.index]
        elif limit is not None:
            images, labels = images[:limit], labels[:limit]
        h, w = as_hw(size)
        if images.shape[0] * channels * h * w * 4 <= TENSOR_BUDGET_BYTES:
            out = TensorGanDataset(name, "images", batch_to_tensor(images, channels, size), labels, NUM_CLASSES[name])
            out.prep = batch_note(tuple(images.shape[1:]), channels, size)
            return _noted(out, pick)
    lazy = TorchvisionDataset(name, ds, channels, size, None if pick is not None else limit)
    if pick is not None:
        lazy.take(pick.index, pick.labels)
    return _noted(lazy, pick)


def _targets(ds: Any, name: str) -> Optional[torch.Tensor]:
    """The labels of a set decoded per item, when torchvision keeps them as a list (else None: unlabelled)."""
    targets = getattr(ds, "targets", None)
    if targets is None:
        targets = getattr(ds, "labels", None)
    if NUM_CLASSES[name] is None or targets is None:
        return None
    return torch.as_tensor(np.asarray(targets), dtype=torch.long)


def _noted(out: GanDataset, pick: Any) -> GanDataset:
    """The subset's class count, names and note on the set built from it."""
    if pick is not None:
        out.num_classes, out.class_names = pick.num_classes, pick.class_names
        out.subset_of, out.subset_detail = pick.total, pick.detail
    return out
