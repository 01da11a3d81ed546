"""Pictures people look at: sample grids, progress GIFs, loss curves, real-vs-fake panels, image dumps.

Images are float tensors in [-1, 1] with shape (N, C, H, W), C = 1 or 3 (what a tanh generator emits).
Every file is written atomically (temp file in the same folder, then ``os.replace``), so an interrupted run never
leaves a half-written PNG/GIF/NPZ at the target path for a viewer or an evaluation script to choke on.

Heavy imports (matplotlib, torchvision, imageio, PIL) happen inside the functions so ``import ganforge.viz`` is cheap;
matplotlib is used through ``Figure`` + the Agg canvas only, never pyplot, so no display or global state is needed.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch

from ganforge.io_utils import atomic_target

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure
    from PIL import Image

PathLike = Union[str, "os.PathLike[str]"]
ArrayLike = Union[torch.Tensor, np.ndarray]

__all__ = [
    "to_uint8",
    "image_grid",
    "save_grid",
    "save_progress_gif",
    "LossPanels",
    "plot_losses",
    "save_real_vs_fake",
    "save_side_by_side",
    "save_image_folder",
    "save_npz",
    "save_points_plot",
]

_PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".gif": "GIF", ".webp": "WEBP"}


# --------------------------------------------------------------------------------------------------- atomic writes
def _pil_format(path: PathLike) -> str:
    """PIL format name for ``path``'s suffix; PNG when the suffix is missing or unknown (lossless is the safe bet)."""
    return _PIL_FORMATS.get(Path(path).suffix.lower(), "PNG")


def _mpl_format(path: PathLike) -> str:
    """matplotlib format for ``path``; explicit so matplotlib never appends an extension to the temp name."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if suffix in {"png", "pdf", "svg", "jpg", "jpeg"} else "png"


def _save_figure(fig: "Figure", out_path: PathLike, dpi: int = 100) -> Path:
    """Render a standalone matplotlib Figure with the Agg canvas and save it atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_target(out_path) as tmp:
        fig.savefig(tmp, format=_mpl_format(out_path), dpi=dpi, bbox_inches="tight")
    return Path(out_path)


def _new_figure(figsize: tuple[float, float]) -> "Figure":
    """A Figure not registered with pyplot: nothing global to leak or close, works without a display."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


# ----------------------------------------------------------------------------------------------------- conversion
def _as_images(images: ArrayLike) -> torch.Tensor:
    """Validate (N, C, H, W) with C in {1, 3} and return a detached float32 CPU tensor; fail early with the shape."""
    t = torch.as_tensor(images).detach().cpu().float()
    if t.dim() != 4 or t.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, C, H, W) with C = 1 or 3, got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError("expected at least one image, got N = 0")
    return t


def _unit_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> uint8 with round-half-to-even and clamping; NaN becomes mid-grey rather than garbage."""
    x = torch.nan_to_num(x, nan=0.5, posinf=1.0, neginf=0.0)
    return (x * 255.0).round().clamp(0, 255).to(torch.uint8)


def to_uint8(images: ArrayLike) -> np.ndarray:
    """Map [-1, 1] images (N, C, H, W) to uint8 (N, H, W, C), the layout PIL and evaluation suites expect.

    ``round((x + 1) * 127.5)`` clamped to [0, 255]: -1 -> 0, 0 -> 128 (127.5 rounds half to even), 1 -> 255.
    """
    t = _as_images(images)
    return _unit_to_uint8((t + 1.0) / 2.0).permute(0, 2, 3, 1).contiguous().numpy()


def image_grid(images: ArrayLike, nrow: int | None = None, padding: int = 2) -> torch.Tensor:
    """Tile images into one (C, H, W) tensor in [0, 1]; ``nrow`` (images per row) defaults to ceil(sqrt(N)).

    torchvision's ``make_grid`` turns 1-channel input into 3 identical channels; the result is kept as is.
    """
    from torchvision.utils import make_grid

    t = _as_images(images)
    if nrow is None:
        nrow = math.ceil(math.sqrt(t.shape[0]))
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    unit = ((t + 1.0) / 2.0).clamp(0.0, 1.0)
    return make_grid(unit, nrow=nrow, padding=padding, pad_value=0.0)


def _grid_image(images: torch.Tensor, nrow: int | None, padding: int) -> "Image.Image":
    """PIL image of the grid; grayscale input saves as mode L (make_grid's 3 identical channels collapsed)."""
    from PIL import Image

    grid = _unit_to_uint8(image_grid(images, nrow=nrow, padding=padding))
    if images.shape[1] == 1:
        return Image.fromarray(grid[0].numpy(), mode="L")
    return Image.fromarray(grid.permute(1, 2, 0).contiguous().numpy(), mode="RGB")


def _rows_from_labels(labels: Sequence[int]) -> int | None:
    """Run length when labels come in equal contiguous runs (class-per-row layout), else None."""
    runs: list[int] = []
    prev: object = object()
    for lab in labels:
        if runs and lab == prev:
            runs[-1] += 1
        else:
            runs.append(1)
        prev = lab
    if len(runs) > 1 and len(set(runs)) == 1:
        return runs[0]
    return None


# -------------------------------------------------------------------------------------------------------- writers
def save_grid(
    images: ArrayLike,
    path: PathLike,
    nrow: int | None = None,
    labels: Sequence[int] | None = None,
    padding: int = 2,
) -> Path:
    """Save a sample grid as one image file (PNG unless the suffix says otherwise).

    ``labels`` (one per image) is only used for layout: when the labels come in equal contiguous runs
    (e.g. 10 x class 0, 10 x class 1, ...) and ``nrow`` is not given, each row holds one class. No text is drawn.
    """
    t = _as_images(images)
    if labels is not None:
        labels = [int(v) for v in (labels.tolist() if hasattr(labels, "tolist") else labels)]
        if len(labels) != t.shape[0]:
            raise ValueError(f"got {len(labels)} labels for {t.shape[0]} images")
        if nrow is None:
            nrow = _rows_from_labels(labels)
    img = _grid_image(t, nrow, padding)
    with atomic_target(path) as tmp:
        img.save(tmp, format=_pil_format(path))
    return Path(path)


def save_progress_gif(
    grid_paths: Sequence[PathLike],
    out_path: PathLike,
    fps: float = 4,
    hold_last: int = 3,
) -> Path:
    """Animate per-epoch grid images, in the given order, into a looping GIF; the last frame shows longer.

    One GIF frame per input image (the last one's duration is ``hold_last`` times the others, rather than duplicated
    frames, which PIL would merge anyway). Frames of different sizes are padded (black, top-left aligned) to the
    largest width and height so nothing is stretched.
    """
    import imageio.v3 as iio
    from PIL import Image

    if not grid_paths:
        raise ValueError("save_progress_gif needs at least one grid image")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    frames: list[Image.Image] = []
    for p in grid_paths:
        with Image.open(p) as im:
            frames.append(im.convert("RGB"))
    width = max(f.width for f in frames)
    height = max(f.height for f in frames)
    arrays = []
    for f in frames:
        if f.size != (width, height):
            canvas = Image.new("RGB", (width, height), (0, 0, 0))
            canvas.paste(f, (0, 0))
            f = canvas
        arrays.append(np.asarray(f))
    frame_ms = 1000.0 / fps
    durations = [frame_ms] * len(arrays)
    durations[-1] = frame_ms * max(1, hold_last)
    with atomic_target(out_path) as tmp:
        iio.imwrite(tmp, np.stack(arrays), extension=".gif", plugin="pillow", duration=durations, loop=0)
    return Path(out_path)


def _load_records(source: PathLike | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Records from a JSONL file (blank and unparsable lines skipped: a live run may be mid-line) or an iterable."""
    if isinstance(source, (str, os.PathLike)):
        from ganforge.io_utils import read_records

        if not Path(source).is_file():
            raise FileNotFoundError(f"no such metrics file: {source}")
        return read_records(Path(source))
    return [r for r in source if isinstance(r, Mapping)]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _ema(values: np.ndarray, smoothing: float) -> np.ndarray:
    """Bias-corrected EMA (as TensorBoard draws it); NaN/inf points are skipped, not propagated."""
    out = np.empty_like(values, dtype=float)
    acc, weight = 0.0, 0.0
    for i, v in enumerate(values):
        if np.isfinite(v):
            acc = smoothing * acc + (1.0 - smoothing) * v
            weight = smoothing * weight + (1.0 - smoothing)
        out[i] = acc / weight if weight > 0 else np.nan
    return out


@dataclass(frozen=True)
class LossPanels:
    """Which logged statistics ``losses.png`` draws, as a family declares them (``Trainer.loss_panels``): its
    losses in the first panel, D's mean scores of real and fake images in the second; ``stats.png`` draws the rest."""

    losses: tuple[tuple[str, str], ...]  # (stat, legend label), each record must have them all
    scores: tuple[tuple[str, str], ...] = ()  # (stat, legend label), drawn when logged
    accounted: tuple[str, ...] = ()  # further stats that are parts of these (not redrawn in stats.png)

    def keys(self) -> set[str]:
        return {k for k, _ in self.losses + self.scores} | set(self.accounted)


def plot_losses(
    source: PathLike | Iterable[Mapping[str, Any]],
    out_path: PathLike,
    panels: LossPanels,
    smoothing: float = 0.9,
    title: str = "GAN training losses",
) -> Path:
    """Plot the losses over step (raw faint, EMA-smoothed bold), plus D's scores in a second panel if logged.

    ``source`` is a metrics JSONL path or a list of dicts. Records lacking a numeric ``step`` or one of the
    panels' losses (event lines, eval records, ...) are ignored. Raises ValueError when no record qualifies.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    needed = ("step", *(k for k, _ in panels.losses))
    records = [r for r in _load_records(source) if all(_is_number(r.get(k)) for k in needed)]
    if not records:
        raise ValueError(f"no records with numeric {', '.join(map(repr, needed))} to plot")
    steps = np.array([r["step"] for r in records], dtype=float)
    has_probs = any(_is_number(r.get(k)) for r in records for k, _ in panels.scores)

    fig = _new_figure((9, 6.5 if has_probs else 4.5))
    axes = fig.subplots(2 if has_probs else 1, 1, sharex=True, squeeze=False)[:, 0]

    def draw(ax: Any, key: str, label: str, color: str) -> None:
        vals = np.array([float(r[key]) if _is_number(r.get(key)) else np.nan for r in records])
        if np.all(np.isnan(vals)):
            return
        ax.plot(steps, vals, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(steps, _ema(vals, smoothing), color=color, linewidth=1.8, label=label)

    ax = axes[0]
    for (key, label), color in zip(panels.losses, ("tab:blue", "tab:orange", "tab:purple", "tab:brown")):
        draw(ax, key, label, color)
    ax.set_title(title)
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")

    if has_probs:
        ax = axes[1]
        for (key, label), color in zip(panels.scores, ("tab:green", "tab:red", "tab:cyan", "tab:pink")):
            draw(ax, key, label, color)
        values = [float(r[k]) for r in records for k, _ in panels.scores if _is_number(r.get(k))]
        if values and 0.0 <= min(values) and max(values) <= 1.0:
            ax.axhline(0.5, color="grey", linestyle="--", linewidth=0.8)
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel("mean D probability")
        else:  # a critic (WGAN, hinge, LSGAN): raw outputs, not probabilities
            ax.set_ylabel("mean D output")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right")
    axes[-1].set_xlabel("step")
    return _save_figure(fig, out_path)


BOOKKEEPING = {"step", "epoch", "skipped", "img_s", "time"}  # what every metrics line has besides the stats


def family_stat_series(source: PathLike | Iterable[Mapping[str, Any]],
                       panels: LossPanels) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each statistic a family logs beyond those of its ``losses.png`` (Wasserstein estimate, gradient-penalty
    norm, R1, supervised loss...) and each evaluation metric, as (steps, values)."""
    records = _load_records(source)
    common = BOOKKEEPING | panels.keys()
    series: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        if not _is_number(r.get("step")):
            continue
        if isinstance(r.get("eval"), Mapping):
            items = [(f"eval: {k}", v) for k, v in r["eval"].items()]
        elif "event" in r:
            continue
        else:
            items = [(k, v) for k, v in r.items() if k not in common and not k.startswith("lr_")]
        for k, v in items:
            if _is_number(v):
                series.setdefault(k, []).append((float(r["step"]), float(v)))
    return {k: (np.array([s for s, _ in pts]), np.array([v for _, v in pts])) for k, pts in series.items()}


def plot_stats(source: PathLike | Iterable[Mapping[str, Any]], out_path: PathLike, panels: LossPanels,
               smoothing: float = 0.9) -> Path:
    """One panel per family statistic and evaluation metric over the steps (``stats.png`` of a run): e.g. for
    WGAN-GP the Wasserstein estimate, the critic's gradient norm on interpolates (near 1) and the FID below them.
    Raises ValueError when there is nothing beyond the common losses to plot."""
    series = family_stat_series(source, panels)
    if not series:
        raise ValueError("no family statistics or evaluation metrics to plot")
    fig = _new_figure((9, 2.4 * len(series) + 0.6))
    axes = fig.subplots(len(series), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (key, (steps, vals)) in zip(axes, sorted(series.items(), key=lambda kv: kv[0].startswith("eval"))):
        color = "tab:purple" if key.startswith("eval") else "tab:blue"
        if key.startswith("eval") or len(vals) < 3:
            ax.plot(steps, vals, color=color, marker="o", linewidth=1.5)
        else:
            ax.plot(steps, vals, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(steps, _ema(vals, smoothing), color=color, linewidth=1.8)
        ax.set_ylabel(key, fontsize=8)
        ax.grid(True, alpha=0.3)
    axes[0].set_title("family statistics and evaluation")
    axes[-1].set_xlabel("step")
    return _save_figure(fig, out_path)


def save_real_vs_fake(real: ArrayLike, fake: ArrayLike, out_path: PathLike, nrow: int = 8) -> Path:
    """Side-by-side "Real" and "Fake" grids (first 64 images of each), as in the PyTorch DCGAN tutorial."""
    real_t, fake_t = _as_images(real)[:64], _as_images(fake)[:64]
    fig = _new_figure((15, 7.5))
    for ax, imgs, name in zip(fig.subplots(1, 2), (real_t, fake_t), ("Real", "Fake")):
        grid = image_grid(imgs, nrow=nrow, padding=2)
        ax.imshow(_unit_to_uint8(grid).permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    return _save_figure(fig, out_path)


def save_side_by_side(pictures: Sequence[PathLike], titles: Sequence[str], out_path: PathLike) -> Path:
    """Existing PNGs (e.g. two runs' final grids) in one titled row, for before/after comparisons."""
    from PIL import Image

    fig = _new_figure((7.5 * len(pictures), 7.5))
    axes = fig.subplots(1, len(pictures), squeeze=False)[0]
    for ax, pic, title in zip(axes, pictures, titles):
        with Image.open(pic) as im:
            ax.imshow(np.asarray(im.convert("RGB")), interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    return _save_figure(fig, out_path)


def save_image_folder(images: ArrayLike, folder: PathLike, prefix: str = "sample", start: int = 0) -> list[Path]:
    """Write one PNG per image (``prefix_00000.png`` ...), grayscale as mode L, RGB as RGB; for FID-style tools.

    ``start`` offsets the numbering so batches can be appended to the same folder. Returns the written paths.
    """
    from PIL import Image

    arr = to_uint8(images)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(start + len(arr) - 1)))
    paths: list[Path] = []
    for i, a in enumerate(arr):
        img = Image.fromarray(a[:, :, 0], mode="L") if a.shape[2] == 1 else Image.fromarray(a, mode="RGB")
        p = folder / f"{prefix}_{start + i:0{width}d}.png"
        with atomic_target(p) as tmp:
            img.save(tmp, format="PNG")
        paths.append(p)
    return paths


def save_npz(images: ArrayLike, path: PathLike) -> Path:
    """Save images as ``arr_0`` = uint8 (N, H, W, C) in a compressed NPZ, the layout GAN evaluation suites read."""
    arr = to_uint8(images)
    with atomic_target(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: numpy would append ".npz" to a bare name
            np.savez_compressed(fh, arr)
    return Path(path)


def save_points_plot(
    real_points: ArrayLike,
    fake_points: ArrayLike,
    out_path: PathLike,
    title: str | None = None,
) -> Path:
    """Scatter 2D samples (ring / grid toy sets): real in light grey, generated in colour, equal axes.

    Mode collapse shows up here at a glance: coloured points piling onto a few of the grey clusters.
    """
    pts = []
    for name, p in (("real_points", real_points), ("fake_points", fake_points)):
        a = torch.as_tensor(p).detach().cpu().float().numpy()
        if a.ndim != 2 or a.shape[1] != 2:
            raise ValueError(f"{name} must have shape (N, 2), got {a.shape}")
        pts.append(a)
    real_np, fake_np = pts
    fig = _new_figure((6, 6))
    ax = fig.subplots()
    ax.scatter(real_np[:, 0], real_np[:, 1], s=6, c="lightgrey", alpha=0.8, label="real", edgecolors="none")
    ax.scatter(fake_np[:, 0], fake_np[:, 1], s=6, c="tab:orange", alpha=0.6, label="generated", edgecolors="none")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title or "Real vs generated samples")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", markerscale=3)
    return _save_figure(fig, out_path)


def save_copy_pairs(samples: np.ndarray, training: np.ndarray, captions: Sequence[str], out_path: PathLike) -> Path:
    """The copy check's closest pairs: each sample (top row) above its nearest training image (bottom row).

    ``samples`` and ``training``: uint8 (K, C, H, W) of one shape; ``captions``: one line per pair."""
    k = len(samples)
    fig = _new_figure((1.6 * max(k, 2), 3.6))
    axes = fig.subplots(2, max(k, 1), squeeze=False)
    for i in range(k):
        for row, stack in enumerate((samples, training)):
            img = np.asarray(stack[i]).transpose(1, 2, 0)
            ax = axes[row][i]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][i].set_title(captions[i], fontsize=7)
    axes[0][0].set_ylabel("sample", fontsize=8)
    axes[1][0].set_ylabel("training", fontsize=8)
    return _save_figure(fig, out_path)
