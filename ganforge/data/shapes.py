"""A procedural colour set: random ellipses and boxes on random colours, for tests and benches that need colour
images with no package installed (the icon set, ``bench/colorset.py``, needs Debian's icon themes)."""
from __future__ import annotations

import numpy as np


def colour_shapes(n: int, seed: int, size: int = 32) -> np.ndarray:
    """A small colour set: 1-3 ellipses or boxes of random colours on a random colour, uint8 (N, H, W, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img = np.empty((size, size, 3), np.uint8)
        img[:] = rng.integers(0, 256, 3)
        for _ in range(rng.integers(1, 4)):
            cx, cy, rx, ry = rng.uniform(0.2, 0.8, 2).tolist() + rng.uniform(0.1, 0.35, 2).tolist()
            if rng.random() < 0.5:
                inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
            else:
                inside = (abs(xx - cx) <= rx) & (abs(yy - cy) <= ry)
            img[inside] = rng.integers(0, 256, 3)
        out[i] = img
    return out
