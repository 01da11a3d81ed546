"""The dataset type every ganforge data source returns.

One small interface (``(image, label)`` items plus a few attributes) lets the trainer treat MNIST, a folder of
photos and 2-D toy points alike; ``tensor`` lets it skip the DataLoader entirely for sets that fit in memory.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch.utils.data import Dataset

Kind = Literal["images", "points", "pairs"]  # pairs: (A, B) stacked along the channels (data/pairs.py)


class GanDataset(Dataset):
    """Base class: items are ``(float32 tensor, int label)``; label is -1 when the set has no classes.

    Attributes:
        name: the spec the set was built from (``mnist-embedded``, ``folder:/x``...), for logs.
        kind: ``"images"`` (C, H, W) in [-1, 1] or ``"points"`` (2,) in data coordinates.
        sample_shape: shape of one item's tensor.
        num_classes: number of classes, or None when the labels are all -1.
        skipped: files found unreadable so far (folders only; empty otherwise).
        tensor: every item stacked (N, ...) when the set lives in memory, else None.
        labels: LongTensor (N,) matching ``tensor``, else None.
        prep: what the builder did to the source images, in words for logs (``"padded 28x28 -> 32x32"``), so an
            evaluation can say how its reference was shaped; empty when there is nothing to say.
        class_names: the name of each label (a folder's subfolders), else None.
        subset_of, subset_detail: with data.limit / data.classes (``subset.py``), how many items the subset was
            drawn from and how (``"50 per class"``), for the CLI's data line; None and "" for a whole set.
    """

    name: str
    kind: Kind
    sample_shape: tuple[int, ...]
    num_classes: Optional[int]
    skipped: list[str]
    tensor: Optional[torch.Tensor]
    labels: Optional[torch.Tensor]
    prep: str
    class_names: Optional[list[str]]
    subset_of: Optional[int]
    subset_detail: str

    def __init__(self, name: str, kind: Kind, sample_shape: tuple[int, ...], num_classes: Optional[int]) -> None:
        self.name = name
        self.kind = kind
        self.sample_shape = tuple(sample_shape)
        self.num_classes = num_classes
        self.skipped = []
        self.tensor = None
        self.labels = None
        self.prep = ""
        self.class_names = None
        self.subset_of, self.subset_detail = None, ""

    def __len__(self) -> int:  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def skipped_images(self) -> int:
        """Images left out so far; a source whose ``skipped`` entries stand for many images (a shard) says so."""
        return len(self.skipped)

    def skip_note(self) -> str:
        """One phrase for the log: how many images were skipped, and why."""
        return f"{self.skipped_images():,} unreadable files skipped"

    def take(self, index: torch.Tensor, labels: Optional[torch.Tensor]) -> None:
        """Keep only the items at ``index`` (ascending), relabelled ``labels`` (None: unlabelled): data.limit and
        data.classes on a set already built."""
        raise NotImplementedError(f"{type(self).__name__} cannot be cut to a subset")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:  # pragma: no cover
        raise NotImplementedError


class TensorGanDataset(GanDataset):
    """A set already materialised as one tensor, so batches are plain indexing (no per-item Python work)."""

    def __init__(
        self,
        name: str,
        kind: Kind,
        tensor: torch.Tensor,
        labels: torch.Tensor,
        num_classes: Optional[int],
    ) -> None:
        if tensor.shape[0] != labels.shape[0]:
            raise ValueError(f"{tensor.shape[0]} items but {labels.shape[0]} labels")
        super().__init__(name, kind, tuple(tensor.shape[1:]), num_classes)
        self.tensor = tensor.contiguous().to(torch.float32)
        self.labels = labels.to(torch.long).contiguous()

    def __len__(self) -> int:
        return int(self.tensor.shape[0])

    def take(self, index: torch.Tensor, labels: Optional[torch.Tensor]) -> None:
        self.tensor = self.tensor[index].contiguous()
        self.labels = labels.to(torch.long).contiguous() if labels is not None else \
            torch.full((len(index),), -1, dtype=torch.long)
        if getattr(self, "paths", None) is not None:  # a cached folder: its fingerprint is its file list
            self.paths = [self.paths[i] for i in index.tolist()]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.tensor[index], int(self.labels[index])
