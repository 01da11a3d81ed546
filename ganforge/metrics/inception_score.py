"""Inception Score from a classifier's class probabilities.

Salimans et al. 2016, "Improved Techniques for Training GANs": ``IS = exp(E_x KL(p(y|x) || p(y)))`` where
``p(y)`` is the marginal class distribution of the generated set. It is high when each sample is classified
confidently (low-entropy p(y|x)) and the samples spread over many classes (high-entropy p(y)); it lies in
``[1, K]`` for K classes. As in the authors' code and torch-fidelity, the samples are cut into ``splits``
consecutive chunks (``i*N//splits : (i+1)*N//splits``), each chunk uses its own marginal, and the mean and
population std (``ddof=0``) of the per-chunk scores are reported. No shuffling: shuffle before calling if the
rows are ordered (torch-fidelity shuffles with a fixed seed; for i.i.d. samples it makes no difference).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ganforge.metrics._arrays import as_float64_2d

__all__ = ["inception_score"]

# tolerated |row sum - 1| (float32 softmax outputs are off by ~1e-7; logits passed by mistake are far off)
_SUM_TOLERANCE = 1e-3


def _safe_log(p: np.ndarray) -> np.ndarray:
    """log(p) where p > 0 and 0 elsewhere (the convention 0 log 0 = 0), without warnings."""
    return np.log(np.where(p > 0, p, 1.0))


def inception_score(probs: Any, splits: int = 10) -> tuple[float, float]:
    """Inception Score as (mean, std) over ``splits`` chunks of ``probs`` (N, K), rows summing to 1.

    Rows are renormalised to sum to 1 exactly; a row off by more than 1e-3 (e.g. logits instead of
    probabilities) or a negative entry raises ``ValueError``.
    """
    p = as_float64_2d(probs, "probs")
    n = p.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be between 1 and the number of samples ({n}), got {splits}")
    if (p < 0).any():
        raise ValueError("probs has negative entries: pass softmax probabilities, not logits")
    sums = p.sum(axis=1, keepdims=True)
    if np.abs(sums - 1.0).max() > _SUM_TOLERANCE:
        raise ValueError("rows of probs must sum to 1: pass softmax probabilities, not logits")
    p = p / sums

    scores = np.empty(splits, dtype=np.float64)
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(axis=0)
        # KL(p(y|x) || p(y)) per row; marginal > 0 wherever some p(y|x) > 0, and 0 log 0 terms vanish
        kl = (part * (_safe_log(part) - _safe_log(marginal))).sum(axis=1)
        scores[i] = np.exp(kl.mean())
    return float(scores.mean()), float(scores.std())
