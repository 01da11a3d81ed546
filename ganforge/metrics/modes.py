"""Mode coverage: how many modes (classes, mixture components) a generator reaches, and how evenly.

Conventions follow the mode-collapse benchmarks of Metz et al. 2017 (Unrolled GANs), Srivastava et al. 2017
(VEEGAN) and Lin et al. 2018 (PacGAN), checked against PacGAN's released evaluation code:

* Histograms are compared with ``KL(p_gen || p_ref)``, the generated histogram first (PacGAN's "reverse KL"; for
  Stacked MNIST the reference is uniform over the 1,000 modes). Empty bins of the generated histogram contribute
  0 (``0 log 0 = 0``), so against a uniform reference ``KL = log K - H(p_gen)``: 0 when all K modes are equally
  hit, ``log(K / m)`` when m modes are equally hit, ``log K`` when everything falls in one mode.
* Stacked MNIST: a mode is covered when at least one sample is classified into it.
* 2-D mixtures (ring of 8, grid of 25): a sample is *high quality* when it lies within ``hq_sigmas`` (3)
  standard deviations of its nearest mode centre; it is then assigned to that mode. A mode is covered when it
  receives at least ``min_per_mode`` high-quality samples; the default 1 is PacGAN's code (a mode counts once
  any high-quality sample lands on it). Raise it (e.g. to a fraction of N/K) for a rule that ignores a
  handful of stray samples. The reverse KL is over the high-quality samples' mode histogram.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ganforge.metrics._arrays import as_float64_1d, as_float64_2d, as_labels

__all__ = ["class_coverage", "histogram_kl", "stacked_mnist_modes", "synthetic_modes"]

# stands in for a zero reference probability inside the log, so a generated bin where the reference has no mass
# costs p * log(p / 1e-12) (large, finite) instead of inf; zero generated bins never reach the log
_REF_EPS = 1e-12


def histogram_kl(counts: np.ndarray, ref: np.ndarray | None = None) -> float:
    """``KL(p || q)`` for ``p = counts / counts.sum()`` and reference probabilities ``q`` (default uniform).

    Bins with p = 0 contribute 0; a bin with p > 0 and q = 0 uses q = 1e-12. Returns nan for an empty histogram.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return float("nan")
    p = counts / total
    q = np.full_like(p, 1.0 / p.size) if ref is None else ref
    hit = p > 0
    return float(np.sum(p[hit] * (np.log(p[hit]) - np.log(np.maximum(q[hit], _REF_EPS)))))


def _reference_hist(ref_hist: Any, num_classes: int) -> np.ndarray | None:
    if ref_hist is None:
        return None
    ref = as_float64_1d(ref_hist, "ref_hist")
    if ref.shape != (num_classes,):
        raise ValueError(f"ref_hist must have {num_classes} entries, got {ref.shape[0]}")
    if (ref < 0).any() or ref.sum() <= 0:
        raise ValueError("ref_hist must be non-negative with a positive sum")
    return ref / ref.sum()


def class_coverage(pred_labels: Any, num_classes: int, ref_hist: Any = None, min_count: int = 1) -> dict[str, Any]:
    """Classes reached by predicted labels and ``KL(p_gen || p_ref)`` of their histogram.

    Args:
        pred_labels: (N,) integer class ids in ``[0, num_classes)``, e.g. a pretrained classifier's argmax on
            generated samples.
        ref_hist: (K,) reference class frequencies (normalised to sum 1); default uniform.
        min_count: a class is covered when it has at least this many samples.

    Returns ``{"classes_covered": int, "kl": float}``.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    labels = as_labels(pred_labels, num_classes, "pred_labels")
    if labels.size == 0:
        raise ValueError("pred_labels is empty")
    counts = np.bincount(labels, minlength=num_classes)
    return {
        "classes_covered": int((counts >= min_count).sum()),
        "kl": histogram_kl(counts, _reference_hist(ref_hist, num_classes)),
    }


def stacked_mnist_modes(pred_r: Any, pred_g: Any, pred_b: Any) -> dict[str, Any]:
    """Stacked MNIST mode coverage (Metz et al. 2017; VEEGAN; PacGAN): mode id ``100 r + 10 g + b``.

    ``pred_r/g/b`` are (N,) digit predictions (0-9) for the three channels of each generated sample. Returns
    ``{"modes_covered": int (of 1000), "kl": KL(p_gen || uniform over 1000)}``.
    """
    digits = [as_labels(p, 10, name) for p, name in ((pred_r, "pred_r"), (pred_g, "pred_g"), (pred_b, "pred_b"))]
    if len({d.size for d in digits}) != 1:
        raise ValueError(f"pred_r, pred_g, pred_b differ in length: {[d.size for d in digits]}")
    modes = 100 * digits[0] + 10 * digits[1] + digits[2]
    out = class_coverage(modes, 1000)
    return {"modes_covered": out["classes_covered"], "kl": out["kl"]}


def synthetic_modes(samples: Any, centers: Any, std: float | Any, hq_sigmas: float = 3.0,
                    min_per_mode: int = 1) -> dict[str, Any]:
    """Mode coverage of samples from a known Gaussian mixture (2-D ring / grid, or any dimension).

    Args:
        samples: (N, D) generated points.
        centers: (K, D) mixture means.
        std: the components' standard deviation: one float, or (K,) one per component (isotropic).
        hq_sigmas: a sample is high quality when its distance to the nearest centre, in units of that
            component's std, is below this (3, as VEEGAN / PacGAN). "Nearest" is measured in the same units.
        min_per_mode: a mode is covered when at least this many high-quality samples are assigned to it.

    Returns ``{"modes_covered": int, "high_quality": fraction of samples that are high quality,
    "reverse_kl": KL(histogram of high-quality samples over modes || uniform over K)}``; ``reverse_kl`` is nan
    when no sample is high quality.
    """
    x = as_float64_2d(samples, "samples")
    c = as_float64_2d(centers, "centers")
    if x.shape[1] != c.shape[1]:
        raise ValueError(f"samples have {x.shape[1]} dimensions, centers {c.shape[1]}")
    if x.shape[0] == 0 or c.shape[0] == 0:
        raise ValueError("samples and centers must be non-empty")
    if min_per_mode < 1:
        raise ValueError(f"min_per_mode must be >= 1, got {min_per_mode}")
    k = c.shape[0]
    s = np.broadcast_to(np.asarray(std, dtype=np.float64), (k,))
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise ValueError("std must be positive and finite")
    # squared distances via |x|^2 - 2 x.c + |c|^2: (N, K) memory, not (N, K, D)
    sq = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
    z = np.sqrt(np.maximum(sq, 0.0)) / s[None, :]
    nearest = z.argmin(axis=1)
    high_quality = z[np.arange(x.shape[0]), nearest] < hq_sigmas
    counts = np.bincount(nearest[high_quality], minlength=k)
    return {
        "modes_covered": int((counts >= min_per_mode).sum()),
        "high_quality": float(high_quality.mean()),
        "reverse_kl": histogram_kl(counts),
    }
