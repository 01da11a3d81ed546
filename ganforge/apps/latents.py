"""Walks through latent space and style mixing: ``ganforge interpolate`` and ``ganforge mix``.

Interpolation goes through the latents of a list of seeds, one segment per consecutive pair. In z, whose
Gaussian mass lies on a shell, the path is spherical (slerp: a straight line would cut through the low-density
middle and show washed-out images); in a style-based generator's w space, which the mapping network made
closer to linear, it is a straight line (lerp), as in the StyleGAN paper's perceptual path length. Labels of a
conditional generator stay fixed along the walk.

Style mixing (StyleGAN, Karras et al. 2019, figure 3): the image of the column seed with the first
``crossover`` style inputs -- the coarse ones: pose, shape -- taken from the row seed. Crossover 0 gives the column
seed's own image; crossover ``num_ws`` the row seed's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ganforge.errors import UserError
from ganforge.families.outputs import output_of
from ganforge.apps.sampling import TrainedGenerator, require_sample_memory

SPACES = ("z", "w")


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation of the rows of ``a`` and ``b`` (angle and norm interpolated), lerp when parallel."""
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na.clamp_min(1e-12), b / nb.clamp_min(1e-12)
    omega = torch.acos((ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0))
    so = torch.sin(omega)
    near = so.abs() < 1e-6
    safe = torch.where(near, torch.ones_like(so), so)
    direction = torch.where(near, lerp(ua, ub, t), (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / safe)
    return direction * lerp(na, nb, t)


def walk(keys: torch.Tensor, frames: int, spherical: bool, loop: bool = False) -> torch.Tensor:
    """``frames`` latents along the path through ``keys`` (K, D), segment by segment, evenly spaced in t; with
    ``loop`` the path returns to the first key (a GIF that repeats without a jump)."""
    if len(keys) < 2:
        raise UserError("interpolation needs at least two seeds, e.g. --seeds 1,2")
    if loop:
        keys = torch.cat([keys, keys[:1]])
    segments = len(keys) - 1
    if frames < segments + 1:
        raise UserError(f"--frames {frames}: {segments} segments need at least {segments + 1} frames")
    ts = np.linspace(0.0, segments, frames, endpoint=not loop)
    mix = slerp if spherical else lerp
    out = []
    for t in ts:
        i = min(int(t), segments - 1)
        out.append(mix(keys[i:i + 1], keys[i + 1:i + 2], float(t - i)))
    return torch.cat(out)


def interpolation_frames(g: TrainedGenerator, seeds: Sequence[int], frames: int, space: str = "z",
                         label: Optional[int] = None, truncation: Optional[float] = None,
                         loop: bool = False) -> torch.Tensor:
    """The images (frames, C, H, W) of a walk through the latents of ``seeds`` (each seed's z: ``sample``'s)."""
    if space not in SPACES:
        raise UserError(f"--space {space!r}: choose z or w")
    if not output_of(g.config.model).images:
        raise UserError("this run generates 2D points, not images: interpolate needs an image generator")
    if label is not None and not g.conditional:
        raise UserError(f"--label is for conditional models; this run's family is {g.config.model.family!r}")
    require_sample_memory(frames, g.config.model, f"{frames:,} frames:", "use fewer frames")
    z = torch.cat([g.draw_z(1, s) for s in seeds])
    if space == "w":
        ws = walk(g.w_of(z, 1.0 if truncation is None else truncation), frames, spherical=False, loop=loop)
        return g.synthesize(ws)
    path = walk(z, frames, spherical=True, loop=loop)
    labels = None
    if g.conditional:
        labels = [0 if label is None else label]
    return g.sample(len(path), z=path, labels=labels, truncation=truncation)


def mixing_grid(g: TrainedGenerator, rows: Sequence[int], cols: Sequence[int], crossover: Optional[int] = None,
                truncation: float = 1.0, noise: str = "const") -> tuple[torch.Tensor, int]:
    """The style-mixing figure as one grid: a blank corner, the column seeds' images along the top, the row seeds'
    down the left, and at (row r, column c) column c's image with its first ``crossover`` styles from row r.
    Returns (images, images per grid row)."""
    g.require_w("ganforge mix")
    num_ws = g.module.num_ws
    cut = getattr(g.module, "default_crossover", num_ws // 2) if crossover is None else crossover
    if not 0 <= cut <= num_ws:
        raise UserError(f"--crossover {crossover}: choose a layer from 0 to {num_ws} (this generator takes "
                        f"{num_ws} styles)")
    w_rows = g.w_of(torch.cat([g.draw_z(1, s) for s in rows]), truncation)
    w_cols = g.w_of(torch.cat([g.draw_z(1, s) for s in cols]), truncation)
    top = g.synthesize(w_cols, noise)
    left = g.synthesize(w_rows, noise)
    tiles = [torch.full_like(top[:1], -1.0), top]
    for r in range(len(rows)):
        mixed = g.module.broadcast(w_cols).clone()  # written per row below
        mixed[:, :cut] = w_rows[r]
        tiles += [left[r:r + 1], g.synthesize(mixed, noise)]
    return torch.cat(tiles), len(cols) + 1


def save_walk(frames: torch.Tensor, out: Path, fps: float = 20.0, scale: int = 1) -> Path:
    """A looping GIF or an MP4 (needs imageio-ffmpeg: ``pip install 'ganforge[video]'``) of the frames."""
    import imageio.v3 as iio

    from ganforge.io_utils import atomic_target
    from ganforge.viz import to_uint8

    suffix = out.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise UserError(f"--out {out}: write a .gif or an .mp4")
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise UserError("--out *.mp4 needs ffmpeg: pip install 'ganforge[video]' (imageio-ffmpeg), "
                            "or write a .gif") from None
    if scale > 1:
        frames = torch.nn.functional.interpolate(frames, scale_factor=scale, mode="nearest")
    arr = to_uint8(frames)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    with atomic_target(out) as tmp:
        if suffix == ".gif":
            iio.imwrite(tmp, arr, extension=".gif", plugin="pillow", duration=1000.0 / fps, loop=0)
        else:
            if arr.shape[1] % 16 or arr.shape[2] % 16:  # H.264 encoders want sides that are multiples of 16
                arr = np.pad(arr, ((0, 0), (0, -arr.shape[1] % 16), (0, -arr.shape[2] % 16), (0, 0)))
            iio.imwrite(tmp, arr, extension=".mp4", plugin="FFMPEG", fps=fps)
    return out
