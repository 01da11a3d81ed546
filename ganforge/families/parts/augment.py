"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same random, differentiable transforms are applied to every image D sees, real and fake, in both D's and
G's updates; G's gradient flows back through them. D then cannot memorise a small training set, while G is
still pushed towards the un-augmented distribution. Follows the paper's reference code
(mit-han-lab/data-efficient-gans, DiffAugment_pytorch.py) for (N, C, H, W) images in [-1, 1]:

- ``color``: brightness + U(-0.5, 0.5); saturation x U(0, 2) around the per-pixel channel mean; contrast
  x U(0.5, 1.5) around the image mean (in that order);
- ``translation``: integer shift of up to 1/8 of the size per axis, zero padding;
- ``cutout``: one square of half the size (clipped at the borders) set to 0.

``draw_params`` draws every random number (from ``generator`` when given, which must live on ``device``, so
runs are reproducible and resumable); ``apply`` is deterministic given them, so one draw can augment a real and a
fake batch identically. ``diff_augment`` is the one-call form.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


@dataclass(frozen=True)
class AugParams:
    """One draw of DiffAugment's random numbers for a batch of ``n`` images of ``h`` x ``w``."""

    policy: tuple[str, ...]
    n: int
    h: int
    w: int
    brightness: Optional[torch.Tensor] = None  # (N, 1, 1, 1), added
    saturation: Optional[torch.Tensor] = None  # (N, 1, 1, 1), factor
    contrast: Optional[torch.Tensor] = None  # (N, 1, 1, 1), factor
    translation: Optional[torch.Tensor] = None  # (N, 2) long: (dy, dx); output(i, j) = input(i + dy, j + dx)
    cutout: Optional[torch.Tensor] = None  # (N, 2) long: the square's top-left corner, may lie off the image


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation"`` -> ("color", "translation"); '' -> (); unknown or repeated names: ValueError."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {unknown[0]!r}; choose from: {', '.join(POLICIES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"DiffAugment policy {policy!r} repeats a transform")
    return names


def _scaled_size(size: int, ratio: float) -> int:
    return int(size * ratio + 0.5)  # the reference's rounding


def draw_params(n: int, h: int, w: int, policy: str = "color,translation,cutout",
                device: Union[str, torch.device] = "cpu", generator: Optional[torch.Generator] = None) -> AugParams:
    """Draw the random numbers of ``policy`` for ``n`` images of ``h`` x ``w``, in the policy's order."""
    names = parse_policy(policy)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand((n, 1, 1, 1), device=device, generator=generator)

    def integers(low: tuple[int, int], high: tuple[int, int]) -> torch.Tensor:
        """(N, 2) long, column k uniform in [low[k], high[k])."""
        cols = [torch.randint(lo, hi, (n,), device=device, generator=generator) for lo, hi in zip(low, high)]
        return torch.stack(cols, dim=1)

    drawn: dict[str, torch.Tensor] = {}
    for name in names:
        if name == "color":
            drawn.update(brightness=uniform(-0.5, 0.5), saturation=uniform(0.0, 2.0), contrast=uniform(0.5, 1.5))
        elif name == "translation":
            sh, sw = _scaled_size(h, TRANSLATION_RATIO), _scaled_size(w, TRANSLATION_RATIO)
            drawn["translation"] = integers((-sh, -sw), (sh + 1, sw + 1))
        else:  # cutout: the square's centre drawn as in the reference, stored as its top-left corner
            ch, cw = _scaled_size(h, CUTOUT_RATIO), _scaled_size(w, CUTOUT_RATIO)
            centre = integers((0, 0), (h + 1 - ch % 2, w + 1 - cw % 2))
            drawn["cutout"] = centre - torch.tensor([ch // 2, cw // 2], device=centre.device)
    return AugParams(names, n, h, w, **drawn)


def _color(x: torch.Tensor, p: AugParams) -> torch.Tensor:
    x = x + p.brightness.to(x.dtype)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * p.saturation.to(x.dtype) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * p.contrast.to(x.dtype) + mean


def _translation(x: torch.Tensor, p: AugParams) -> torch.Tensor:
    """Gather from a 1-pixel zero border: indices past the edge are clamped onto it, so shifted-in pixels are 0."""
    n, c, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1))
    rows = (torch.arange(h, device=x.device) + p.translation[:, :1]).clamp(-1, h) + 1  # (N, H)
    cols = (torch.arange(w, device=x.device) + p.translation[:, 1:]).clamp(-1, w) + 1  # (N, W)
    x = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2))
    return x.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def _cutout(x: torch.Tensor, p: AugParams) -> torch.Tensor:
    _, _, h, w = x.shape
    size_h, size_w = _scaled_size(h, CUTOUT_RATIO), _scaled_size(w, CUTOUT_RATIO)
    top, left = p.cutout[:, :1], p.cutout[:, 1:]
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= top) & (rows < top + size_h)  # (N, H)
    in_cols = (cols >= left) & (cols < left + size_w)  # (N, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


_APPLY: dict[str, Callable[[torch.Tensor, AugParams], torch.Tensor]] = {
    "color": _color, "translation": _translation, "cutout": _cutout}


def apply(x: torch.Tensor, params: AugParams) -> torch.Tensor:
    """Augment ``x`` (N, C, H, W) with a given draw; differentiable w.r.t. ``x``, never in place."""
    n, _, h, w = x.shape
    if (n, h, w) != (params.n, params.h, params.w):
        raise ValueError(f"params drawn for {params.n} images of {params.h}x{params.w}, got {n} of {h}x{w}")
    for name in params.policy:
        x = _APPLY[name](x, params)
    return x


def diff_augment(x: torch.Tensor, policy: str = "color,translation,cutout",
                 generator: Optional[torch.Generator] = None, params: Optional[AugParams] = None) -> torch.Tensor:
    """DiffAugment ``x`` with a fresh draw on ``x``'s device, or with ``params`` (then ``policy`` is theirs)."""
    if params is None:
        params = draw_params(x.shape[0], x.shape[2], x.shape[3], policy, x.device, generator)
    return apply(x, params)
