"""Input checks shared by the metric modules: turn arrays or tensors into clean float64 / int64 NumPy arrays.

No torch import here: a ``torch.Tensor`` can only be passed in if torch is already imported, so it is recognised
through ``sys.modules`` and ``import ganforge.metrics`` stays NumPy-only.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np


def is_tensor(x: Any) -> bool:
    """True if ``x`` is a ``torch.Tensor`` (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy view/copy of an array-like or a (possibly GPU, possibly grad-tracking) tensor."""
    if is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def as_float64_2d(x: Any, name: str) -> np.ndarray:
    """``x`` as a C-contiguous float64 array of shape (N, D); raises ``ValueError`` on a bad shape or NaN/inf."""
    if is_tensor(x):
        x = x.detach().to(device="cpu", dtype=sys.modules["torch"].float64)
    arr = np.ascontiguousarray(to_numpy(x), dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples x features), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def as_float64_1d(x: Any, name: str) -> np.ndarray:
    """``x`` as a finite float64 vector."""
    arr = np.asarray(to_numpy(x), dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def as_labels(x: Any, num_classes: int, name: str) -> np.ndarray:
    """``x`` as an int64 vector of class ids, each in ``[0, num_classes)``."""
    arr = to_numpy(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got values in [{arr.min()}, {arr.max()}]")
    return arr
