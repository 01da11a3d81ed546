"""The copy check: which generated samples are (near) copies of a training image. Math only, on arrays.

A sample is a copy when it is closer to its nearest training image than training images usually are to each other,
in feature space AND in pixel space:

1. Feature space: each sample's nearest training image (L2 on the extractor's features). The yardstick is the
   training set's own distance to closest record (DCR): for up to ``MAX_QUERIES`` training images, the distance to
   their nearest OTHER training image (leave-one-out by index, so exact duplicates count as distance 0).
2. Pixel space (the confirmation): the RMS pixel distance between the sample and that same training image, against
   the training images' RMS pixel distance to their own feature-space neighbour.
3. Flagged: both distances at or below the ``QUANTILE`` (5th percentile) of the training set's distribution.

That is the DCR test of the synthetic-data privacy literature (Park et al. 2018, table-GAN; Zhao et al. 2021,
CTAB-GAN: a synthetic record closer than the 5th percentile of the real data's own DCR is a leak), with a pixel
confirmation so that two images that only share a feature-space neighbourhood are not called copies. The
per-image radius of Alaa et al. 2022 (authenticity: closer to x than x's own nearest neighbour) was not chosen:
held-out images from the training distribution are their neighbour's mutual nearest neighbour about half of the
time, so it flags ~50% of genuinely new images; the 5th percentile flags ~5% of them by construction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

QUANTILE = 0.05  # a sample below this quantile of the training set's own nearest-neighbour distances is a copy
MAX_QUERIES = 2000  # training images whose leave-one-out distance sets the yardstick (a seeded, even choice)
WARN_SHARE = 0.10  # a share of copies above this is a warning: twice the share held-out images reach
CHUNK = 1024


def nearest(queries: torch.Tensor, base: torch.Tensor, exclude: Optional[torch.Tensor] = None,
            chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, index) of each query row's nearest ``base`` row (float64, in chunks); ``exclude[i]``: a base index
    query i may not pick (itself, for leave-one-out)."""
    dist = torch.empty(len(queries), dtype=torch.float64)
    index = torch.empty(len(queries), dtype=torch.int64)
    base = base.double()
    for start in range(0, len(queries), chunk):
        d = torch.cdist(queries[start:start + chunk].double(), base)
        if exclude is not None:
            rows = torch.arange(d.shape[0])
            d[rows, exclude[start:start + chunk]] = float("inf")
        best = d.min(dim=1)
        dist[start:start + chunk], index[start:start + chunk] = best.values, best.indices
    return dist, index


def pixel_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise RMS distance of two uint8 (or float) image stacks of one shape, in [0, 1] units."""
    diff = a.reshape(len(a), -1).astype(np.float32) - b.reshape(len(b), -1).astype(np.float32)
    return np.sqrt((diff ** 2).mean(axis=1)) / 255.0


@dataclass
class CopyCheck:
    """The outcome: per sample its nearest training image and both distances, the yardsticks and the share."""

    share: float  # samples flagged as copies
    nearest: np.ndarray  # (N,) index of each sample's nearest training image (feature space)
    feature_distance: np.ndarray  # (N,)
    pixel_distance: np.ndarray  # (N,)
    flagged: np.ndarray  # (N,) bool
    feature_threshold: float  # QUANTILE of the training set's leave-one-out feature distances
    pixel_threshold: float  # ... and of their pixel distances to that neighbour
    n_training: int
    n_queries: int

    def closest(self, k: int = 8) -> list[int]:
        """The ``k`` samples nearest to a training image (by feature distance over its threshold, then pixels)."""
        score = self.feature_distance / max(self.feature_threshold, 1e-12) + \
            self.pixel_distance / max(self.pixel_threshold, 1e-12)
        return [int(i) for i in np.argsort(score, kind="stable")[:k]]

    def summary(self, k: int = 8) -> dict:
        """What eval.json keeps: the rule, the yardsticks and the closest pairs."""
        pairs = [{"sample": i, "training_image": int(self.nearest[i]),
                  "feature_distance": round(float(self.feature_distance[i]), 6),
                  "pixel_rms": round(float(self.pixel_distance[i]), 6), "copy": bool(self.flagged[i])}
                 for i in self.closest(k)]
        return {"share": self.share, "rule": f"feature and pixel distance to the nearest training image both <= "
                f"the {QUANTILE:.0%} quantile of the training images' own leave-one-out distances",
                "feature_threshold": self.feature_threshold, "pixel_threshold": self.pixel_threshold,
                "n_training": self.n_training, "n_yardstick": self.n_queries, "closest": pairs}


def copy_check(gen_features, train_features, gen_pixels: np.ndarray, train_pixels: np.ndarray,
               quantile: float = QUANTILE, max_queries: int = MAX_QUERIES, seed: int = 0) -> CopyCheck:
    """Flag the samples that copy a training image (see the module's docstring). Features: (N, D) and (M, D);
    pixels: the same images as uint8 arrays of one shape (M >= 2)."""
    gen_f = torch.as_tensor(np.asarray(gen_features, dtype=np.float64))
    train_f = torch.as_tensor(np.asarray(train_features, dtype=np.float64))
    m = len(train_f)
    if m < 2:
        raise ValueError("the copy check needs at least 2 training images")
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(m, size=min(m, max_queries), replace=False))
    q = torch.as_tensor(queries)
    own_d, own_j = nearest(train_f[q], train_f, exclude=q)
    own_pix = pixel_distance(train_pixels[queries], train_pixels[own_j.numpy()])
    f_thr = float(np.quantile(own_d.numpy(), quantile))
    p_thr = float(np.quantile(own_pix, quantile))
    d, j = nearest(gen_f, train_f)
    pix = pixel_distance(gen_pixels, train_pixels[j.numpy()])
    flagged = (d.numpy() <= f_thr) & (pix <= p_thr)
    return CopyCheck(float(flagged.mean()) if len(flagged) else 0.0, j.numpy(), d.numpy(), pix, flagged,
                     f_thr, p_thr, m, len(queries))
