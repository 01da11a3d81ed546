"""The scoring pipeline: batches of images through a feature extractor, then the metrics (no files, no models).

An ``ImageSource`` yields images in [-1, 1]; ``collect`` streams them through an extractor (running mean and
covariance, so FID's memory is flat in N; features kept only for KID and precision/recall); ``compute`` turns
generated and reference ``Collected`` into labelled metrics, e.g. ``fid[mnist-cnn]`` vs ``fid[inception-v3]``:
in-domain numbers compare ganforge runs with each other, Inception numbers compare with papers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from ganforge.errors import UserError

MIN_SIDE = 8  # smaller images carry too little for any extractor (both resize up, to 28 or 299)


def summary_line(result: dict) -> str:
    """The headline figures of an evaluation in one line: FID, precision/recall, classes, or a translator's."""
    from ganforge.metrics.registry import headline_parts

    return ", ".join(headline_parts(result["metrics"])) + f" ({result['n_generated']:,} samples, {result['extractor']})"

@dataclass
class ImageSource:
    """Batches of images in [-1, 1] (N, C, H, W), with the shape they share."""

    describe: str
    channels: int
    height: int
    width: int
    count: int
    batches: Callable[[int], Iterator[torch.Tensor]]  # batch_size -> iterator
    prep: str = ""  # what building the images took, for a reference set (GanDataset.prep)
    labels: Optional[np.ndarray] = None  # a conditional run's images: the class each was drawn for ...
    num_classes: Optional[int] = None  # ... out of this many

    @property
    def hw(self) -> tuple[int, int]:
        return self.height, self.width

def from_uint8_nhwc(arr: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()
    return t / 127.5 - 1.0

def gather(source: ImageSource, limit: int, batch_size: int = 500) -> torch.Tensor:
    """The first ``limit`` images of ``source`` as one tensor (what an extractor that learns from the reference,
    ``ssl-conv``, is fitted on)."""
    out, n = [], 0
    for batch in source.batches(batch_size):
        out.append(batch[:limit - n].float())
        n += out[-1].shape[0]
        if n >= limit:
            break
    return torch.cat(out) if out else torch.empty(0, source.channels, source.height, source.width)

def check_side(what: str, height: int, width: int) -> None:
    """Images too small to evaluate fail here, in one line, rather than somewhere inside an extractor."""
    if min(height, width) < MIN_SIDE:
        raise UserError(f"{what}: images are {height}x{width}, too small to evaluate (at least {MIN_SIDE} px a side)")

@dataclass
class Collected:
    stats: object  # RunningStats
    features: Optional[np.ndarray]
    probs: Optional[np.ndarray]
    channel_preds: Optional[np.ndarray] = None  # (N, C) digit per channel, for Stacked MNIST
    n: int = 0
    prep: str = ""  # the source's ImageSource.prep
    pixels: Optional[np.ndarray] = None  # uint8 (N, C, h, w) thumbnails (the copy check's pixel space), if kept


PIXEL_SIDE = 64  # images kept for the copy check are area-downscaled to at most this many pixels a side


def thumbnails(batch: torch.Tensor) -> np.ndarray:
    """[-1, 1] float (N, C, H, W) -> uint8 (N, C, h, w), at most PIXEL_SIDE a side (area average: no aliasing)."""
    h, w = batch.shape[-2:]
    if max(h, w) > PIXEL_SIDE:
        scale = PIXEL_SIDE / max(h, w)
        side = (max(1, round(h * scale)), max(1, round(w * scale)))
        batch = torch.nn.functional.adaptive_avg_pool2d(batch.float(), side)
    return ((batch.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()

def collect(source: ImageSource, extractor, batch_size: int, keep_features: bool, per_channel: bool = False,
            progress: Optional[Callable[[int], None]] = None, keep_pixels: bool = False) -> Collected:
    """Stream ``source`` through ``extractor``; ``keep_pixels``: also keep uint8 thumbnails (the copy check)."""
    from ganforge.metrics.frechet import RunningStats

    stats = RunningStats()
    feats, probs, chans, pixels = [], [], [], []
    n = 0
    with torch.inference_mode():
        for batch in source.batches(batch_size):
            out = extractor(batch)
            f = out["features"]
            stats.update(f)
            if keep_features:
                feats.append(np.asarray(f.float().cpu() if torch.is_tensor(f) else f, dtype=np.float32))
            logits = out.get("logits")
            if logits is not None:
                probs.append(torch.softmax(torch.as_tensor(logits).double(), dim=1).cpu().numpy())
            if per_channel:
                chans.append(np.asarray(extractor.classify_channels(batch)))
            if keep_pixels:
                pixels.append(thumbnails(batch))
            n += batch.shape[0]
            if progress:
                progress(batch.shape[0])
    return Collected(stats, np.concatenate(feats) if feats else None, np.concatenate(probs) if probs else None,
                     np.concatenate(chans) if chans else None, n, source.prep,
                     np.concatenate(pixels) if pixels else None)

def shape_text(hw: tuple[int, int]) -> str:
    """'32px' for a square, '28x40px' otherwise (the cache key keeps the square form it always had)."""
    h, w = hw
    return f"{h}px" if h == w else f"{h}x{w}px"

def compute(metrics: Sequence[str], gen: Collected, ref: Collected, extractor_name: str, ref_spec: str,
            num_classes: int = 10, seed: int = 0, training: Optional[Collected] = None,
            details: Optional[dict] = None) -> dict[str, float]:
    """The registry's metrics (``metrics/registry.py``) on two collected sides, labelled with the extractor;
    ``training``: the training images (features and pixels), for the copy check; ``details`` receives what a metric
    keeps beyond its numbers (the copy check's closest pairs)."""
    from ganforge.data.build import digits_per_channel
    from ganforge.metrics.registry import Context, compute as run_metrics

    ctx = Context(extractor_name, seed, digits_per_channel(ref_spec), training, {} if details is None else details)
    return run_metrics(metrics, gen, ref, ctx)

FADED = 0.25  # a class under this share of its fair share 1/K is called faded (the training watch's default)


def class_shares(probs: np.ndarray) -> dict[str, list[float]]:
    """``{"class_shares": [...]}``: the fraction of the generated images the classifier puts in each class."""
    counts = np.bincount(probs.argmax(1), minlength=probs.shape[1])
    return {"class_shares": [round(float(c) / len(probs), 5) for c in counts]}


def _class_lines(shares: Optional[list[float]]) -> list[str]:
    """The table's class-share line, with a warning when a class faded out."""
    if not shares:
        return []
    fair = 1.0 / len(shares)
    text = ", ".join(f"{k} {100 * v:.1f}%" for k, v in enumerate(shares))
    lines = [f"  class shares (fair {100 * fair:.0f}%): {text}"]
    faded = [k for k, v in enumerate(shares) if v < FADED * fair]
    if faded:
        lines.append(f"  warning: class {', '.join(map(str, faded))} under {FADED:g}x its fair share: faded out")
    return lines


def label_accuracy(source: ImageSource, probs: Optional[np.ndarray], extractor_name: str) -> dict[str, float]:
    """A conditional run: how often the extractor's classifier reads an image as the class it was drawn for.

    Only where the classifier's classes are the run's (the digit classifier on a 10-class digit run); FID alone
    cannot tell a generator that ignores its label from one that obeys it.
    """
    if source.labels is None or probs is None or probs.shape[1] != source.num_classes:
        return {}
    return {f"label_accuracy[{extractor_name}]": float(np.mean(probs.argmax(1) == source.labels[:len(probs)]))}

def format_table(result: dict) -> str:
    rows = [(k, v) for k, v in result["metrics"].items()]
    width = max(len(k) for k, _ in rows) if rows else 10
    shape = f"{result['channels']}x{result['image_height']}x{result['image_width']}"
    head = (f"{result['source']} vs {result['ref']}  ({result['n_generated']:,} generated, "
            f"{result['n_reference']:,} reference, {shape}, {result['seconds']}s)")
    prep = [f"reference {result['ref']}: {result['reference_prep']}"] if result.get("reference_prep") else []
    proto = result.get("protocol") or {}
    if proto:
        prep.append(f"extractor {proto.get('extractor')} (weights {proto.get('weights')}; "
                    f"{proto.get('resize_filter')}); reference split {proto.get('reference_split')}")
    lines = [head] + prep + [f"  {k:<{width}}  {v:.6g}" for k, v in rows] + _class_lines(result.get("class_shares"))
    copies = result.get("copies")
    if isinstance(copies, dict) and copies.get("picture"):
        lines.append(f"  copy check: closest pairs in {copies['picture']}")
    div = result.get("diversity")
    if isinstance(div, dict) and div.get("modes_dropped"):
        lines.append(f"  warning: modes dropped: coverage {div['coverage']:.2f} where the data itself would reach "
                     f"{div['expected_coverage']:.2f}, at density {div['density']:.2f} (one class, or a few images "
                     "repeated)")
    return "\n".join(lines)
