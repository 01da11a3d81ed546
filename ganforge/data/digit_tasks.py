"""Image-to-image tasks made from the embedded digits, so translation trains and is tested offline.

Every degradation is a deterministic function of one uint8 digit image of 32x32 pixels (the 28x28 MNIST digit
padded with 2 px of background, ink 255 on background 0), so anyone can rebuild the inputs from other digits:

- ``sr`` (x4 super-resolution): the digit downscaled to 8x8 and upscaled back to 32x32, both with PIL's bicubic
  resampling on the uint8 image (``Image.resize(..., Image.BICUBIC)``).
- ``inpaint``: the digit with its lower half, rows 16..31, set to background (0).
- ``edges``: the morphological gradient (3x3 max filter minus 3x3 min filter, edge pixels replicated) of the
  digit thresholded at 128 (ink where the digit is >= 128), as 0 / 255: the edges2shoes task in miniature.
- ``thicken`` (domain B of thin2thick): the 3x3 max filter of the digit (a dilation; edge pixels replicated).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

SIDE = 32  # every task works on the padded 32x32 digits
SR_LOW = 8  # the super-resolution input's low resolution (x4)


def _filter3(img: np.ndarray, reduce: Callable) -> np.ndarray:
    """3x3 max / min filter of a 2-D array, its border replicated."""
    p = np.pad(img, 1, mode="edge")
    h, w = img.shape
    windows = np.stack([p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])
    return reduce(windows, axis=0)


def sr_input(digit: np.ndarray) -> np.ndarray:
    """32x32 -> 8x8 -> 32x32, PIL bicubic both ways, on uint8."""
    low = Image.fromarray(digit, "L").resize((SR_LOW, SR_LOW), Image.BICUBIC)
    return np.asarray(low.resize((SIDE, SIDE), Image.BICUBIC), dtype=np.uint8)


def inpaint_input(digit: np.ndarray) -> np.ndarray:
    """The lower half (rows 16..31) set to background."""
    out = digit.copy()
    out[SIDE // 2:] = 0
    return out


def edges_input(digit: np.ndarray) -> np.ndarray:
    """Morphological gradient (3x3 max - 3x3 min) of the digit thresholded at 128, as 0 / 255."""
    ink = (digit >= 128).astype(np.uint8)
    return ((_filter3(ink, np.max) - _filter3(ink, np.min)) * 255).astype(np.uint8)


def thicken(digit: np.ndarray) -> np.ndarray:
    """3x3 max filter: strokes one pixel thicker on every side."""
    return _filter3(digit, np.max).astype(np.uint8)


PAIRED = {"sr": sr_input, "inpaint": inpaint_input, "edges": edges_input}


def apply(fn: Callable[[np.ndarray], np.ndarray], digits: np.ndarray) -> np.ndarray:
    """``fn`` on each (32, 32) uint8 image of ``digits`` (N, 32, 32)."""
    return np.stack([fn(d) for d in digits]) if len(digits) else digits.copy()


def stroke_thickness(u8: np.ndarray) -> float:
    """Mean stroke thickness of uint8 digits (N, H, W) in pixels: ink area (>= 128) over the length of the
    ink's outline / 2, i.e. area / (perimeter / 2), which for a stroke of width t and length L >> t is t."""
    ink = u8 >= 128
    area = ink.sum(axis=(1, 2)).astype(np.float64)
    edge = np.zeros_like(ink)
    edge[:, 1:] |= ink[:, 1:] != ink[:, :-1]
    edge[:, :, 1:] |= ink[:, :, 1:] != ink[:, :, :-1]
    perimeter = np.maximum(edge.sum(axis=(1, 2)), 1)
    return float(np.mean(area / (perimeter / 2)))
