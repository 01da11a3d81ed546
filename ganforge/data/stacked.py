"""``stacked-mnist``: three digits stacked as the R, G and B channels, 1,000 modes (VEEGAN, PacGAN).

The standard mode-collapse benchmark: a generator that covers the data makes all 10^3 digit triples in equal
proportion. Built deterministically from the embedded digits (each channel an independent random draw from a
fixed seed), so it needs no download; the label is 100*r + 10*g + b.
"""
from __future__ import annotations

import torch

from ganforge.data import embedded
from ganforge.data.base import TensorGanDataset
from ganforge.data.imageops import Size
from ganforge.errors import DataError

NAME = "stacked-mnist"
DEFAULT_SIZE = 25_600  # PacGAN uses 128,000 images from the 60k MNIST set; ours come from 5,000 digits
SEED = 2017


def build(channels: int, size: Size, limit: int | None = None) -> TensorGanDataset:
    if channels != 3:
        raise DataError(f"dataset '{NAME}' stacks three digits as RGB: use --set model.channels=3")
    gray = embedded.build(1, size)
    n = limit or DEFAULT_SIZE
    gen = torch.Generator().manual_seed(SEED)
    idx = torch.randint(0, len(gray), (n, 3), generator=gen)
    images = torch.cat([gray.tensor[idx[:, c]] for c in range(3)], dim=1)  # (n, 3, H, W)
    labels = gray.labels[idx]  # (n, 3)
    mode = labels[:, 0] * 100 + labels[:, 1] * 10 + labels[:, 2]
    ds = TensorGanDataset(NAME, "images", images, mode, num_classes=1000)
    ds.prep = f"{gray.prep}, three digits stacked as RGB"
    return ds
