"""What every feature extractor is: the interface the evaluator calls, and the entry that registers one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Union, runtime_checkable

import torch

Device = Union[str, torch.device]


@runtime_checkable
class FeatureExtractor(Protocol):
    """What the evaluator calls. ``name`` goes into metric labels (``fid[mnist-cnn]``, ``fid[inception-v3]``).

    ``__call__(images)``: float (N, C, H, W) in [-1, 1] -> ``{"features": (N, feature_dim) float32 CPU,
    "logits": (N, num_classes) float32 CPU, or None}``. Batching and device moves happen inside.
    """

    name: str
    feature_dim: int
    num_classes: Optional[int]

    def __call__(self, images: torch.Tensor) -> dict[str, Optional[torch.Tensor]]: ...


def check_images(images: torch.Tensor) -> None:
    if not torch.is_tensor(images) or images.dim() != 4 or not images.is_floating_point():
        desc = f"{tuple(images.shape)} {images.dtype}" if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"expected float images (N, C, H, W) in [-1, 1], got {desc}")


@dataclass(frozen=True)
class ExtractorSpec:
    """One registered extractor. ``build(device, weights, batch_size)`` returns a ``FeatureExtractor``;
    ``weights`` is a local file (or None: the extractor's own lookup). An extractor that learns from the data it
    scores against (``fits_reference``) is also given ``reference=``: the reference images, float (N, C, H, W) in
    [-1, 1], or a function returning them (called only when it has to learn)."""

    name: str
    build: Callable[..., FeatureExtractor]
    offline: bool  # works with nothing downloaded (shipped weights, or none at all)
    about: str = ""
    fits_reference: bool = False  # build needs reference= (features learnt from the reference images)
