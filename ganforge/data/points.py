"""2-D Gaussian mixtures from the mode-collapse literature, with their true modes kept for the metrics.

``ring8``: 8 modes evenly spaced on a circle of radius 2, std 0.02 (Metz et al. 2016, Unrolled GANs; VEEGAN).
``grid25``: 25 modes on the grid {-4, -2, 0, 2, 4}^2, std 0.05 (VEEGAN; PacGAN).
Points stay in these data coordinates (not squashed into [-1, 1]) so that "within 3 std of a mode" means what
the papers mean; a generator for them needs an unbounded (linear) output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ganforge.data.base import TensorGanDataset
from ganforge.errors import DataError

DEFAULT_SIZE = 20_000
SEED = 0


@dataclass(frozen=True)
class Mixture:
    name: str
    centers: tuple[tuple[float, float], ...]
    std: float


def _ring(k: int = 8, radius: float = 2.0) -> tuple[tuple[float, float], ...]:
    return tuple((radius * math.cos(2 * math.pi * i / k), radius * math.sin(2 * math.pi * i / k)) for i in range(k))


def _grid(values: tuple[float, ...] = (-4.0, -2.0, 0.0, 2.0, 4.0)) -> tuple[tuple[float, float], ...]:
    return tuple((x, y) for x in values for y in values)


MIXTURES: dict[str, Mixture] = {
    "ring8": Mixture("ring8", _ring(), 0.02),
    "grid25": Mixture("grid25", _grid(), 0.05),
}


def _mixture(spec: str) -> Mixture:
    try:
        return MIXTURES[spec]
    except KeyError:
        raise DataError(f"{spec!r} is not a 2-D point set: choose one of {', '.join(MIXTURES)}") from None


def mode_centers(spec: str) -> torch.Tensor:
    """(K, 2) float32 centres of the mixture's modes, in label order."""
    return torch.tensor(_mixture(spec).centers, dtype=torch.float32)


def mode_std(spec: str) -> float:
    """Standard deviation of every mode (isotropic)."""
    return _mixture(spec).std


def sample(spec: str, n: int, seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points and their mode labels, drawn with a private generator so the set never varies."""
    mix = _mixture(spec)
    gen = torch.Generator().manual_seed(seed)
    centers = mode_centers(spec)
    labels = torch.randint(len(mix.centers), (n,), generator=gen)
    points = centers[labels] + mix.std * torch.randn(n, 2, generator=gen)
    return points, labels


def build(spec: str, limit: int | None = None) -> TensorGanDataset:
    points, labels = sample(spec, limit or DEFAULT_SIZE)
    return TensorGanDataset(spec, "points", points, labels, num_classes=len(MIXTURES[spec].centers))
