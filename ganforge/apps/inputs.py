"""Reading what users hand to the apps: ``.npz`` files of samples (never unpickled)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ganforge.errors import UserError


def load_samples_npz(path: Path) -> np.ndarray:
    """``arr_0`` of a samples file, checked: uint8 (N, H, W, C), N >= 1, C = 1 or 3 (never unpickled)."""
    from ganforge.io_utils import read_npz

    arrays = read_npz(path, what="samples file")
    if "arr_0" not in arrays:
        raise UserError(f"{path} has no arr_0: expected uint8 (N, H, W, C) as written by 'ganforge sample'")
    arr = arrays["arr_0"]
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] not in (1, 3) or arr.shape[0] == 0:
        raise UserError(f"{path}: arr_0 is {arr.dtype} {arr.shape}, expected uint8 (N, H, W, C) with N >= 1 and "
                        "C = 1 or 3")
    return arr
