"""Which torch device a command runs on: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N``, ``mps``."""
from __future__ import annotations

import torch

from ganforge.errors import UserError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available: use --set train.device=cpu")
    return dev
