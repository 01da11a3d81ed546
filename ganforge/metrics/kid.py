"""Kernel Inception Distance: the unbiased MMD^2 between feature sets, averaged over random subsets.

Binkowski, Sutherland, Arbel & Gretton 2018, "Demystifying MMD GANs" (ICLR): KID is the squared maximum mean
discrepancy with the cubic polynomial kernel ``k(x, y) = (x . y / d + 1)^3`` (d = feature size), estimated with
the unbiased U-statistic of Gretton et al. 2012 (Lemma 6). Unlike FID it has an unbiased estimator, so it can be
slightly negative when the two sets come from the same distribution. The subset protocol (``subsets`` draws of
``subset_size`` samples from each set, without replacement; mean and population std of the estimates) follows
the authors' code and torch-fidelity, and with the same ``seed`` draws the same subsets as torch-fidelity does
(a ``numpy.random.RandomState``, generated indices first, then real).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ganforge.metrics._arrays import as_float64_2d

__all__ = ["Kernel", "kernel_inception_distance", "mmd2_unbiased", "polynomial_kernel"]

Kernel = Callable[[np.ndarray, np.ndarray], np.ndarray]


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> np.ndarray:
    """Gram matrix ``(gamma * x . y + coef0) ** degree``, shape (len(x), len(y)); gamma defaults to 1 / d."""
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(x: Any, y: Any, kernel: Kernel | None = None) -> float:
    """Unbiased estimate of MMD^2 between the distributions of the rows of ``x`` (m, D) and ``y`` (n, D).

    ``sum_{i != j} k(x_i, x_j) / (m (m-1)) + sum_{i != j} k(y_i, y_j) / (n (n-1)) - 2 sum_{i,j} k(x_i, y_j) / (m n)``
    (Gretton et al. 2012, eq. 3). ``kernel`` maps two float64 arrays to their Gram matrix; default: the KID
    polynomial kernel. Needs m, n >= 2.
    """
    xa, ya = as_float64_2d(x, "x"), as_float64_2d(y, "y")
    if xa.shape[1] != ya.shape[1]:
        raise ValueError(f"feature sizes differ: {xa.shape[1]} vs {ya.shape[1]}")
    m, n = xa.shape[0], ya.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 samples per set, got {m} and {n}")
    kernel = kernel or polynomial_kernel
    k_xx, k_yy, k_xy = kernel(xa, xa), kernel(ya, ya), kernel(xa, ya)
    term_xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    term_yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    term_xy = k_xy.sum() / (m * n)
    return float(term_xx + term_yy - 2.0 * term_xy)


def kernel_inception_distance(feats_real: Any, feats_fake: Any, subsets: int = 100, subset_size: int = 1000,
                              degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
                              seed: int = 0) -> tuple[float, float]:
    """KID as (mean, std) of ``mmd2_unbiased`` over ``subsets`` random subsets of each set.

    ``subset_size`` is clipped to the smaller set (then each subset is a random permutation of the smaller set).
    The std is the population std (``ddof=0``) of the per-subset estimates, as torch-fidelity reports it; it
    measures the spread of the subset estimates, not the standard error of their mean. Deterministic for a
    given ``seed``. Cost: ``3 * subsets`` Gram matrices of ``subset_size^2`` entries, in float64.
    """
    real = as_float64_2d(feats_real, "feats_real")
    fake = as_float64_2d(feats_fake, "feats_fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: real {real.shape[1]} vs fake {fake.shape[1]}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    size = min(int(subset_size), real.shape[0], fake.shape[0])
    if size < 2:
        raise ValueError(f"KID needs subsets of at least 2 samples (real {real.shape[0]}, fake {fake.shape[0]}, "
                         f"subset_size {subset_size})")

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return polynomial_kernel(a, b, degree=degree, gamma=gamma, coef0=coef0)

    rng = np.random.RandomState(seed)
    estimates = np.empty(subsets, dtype=np.float64)
    for i in range(subsets):
        fake_sub = fake[rng.choice(fake.shape[0], size, replace=False)]
        real_sub = real[rng.choice(real.shape[0], size, replace=False)]
        estimates[i] = mmd2_unbiased(real_sub, fake_sub, kernel)
    return float(estimates.mean()), float(estimates.std())
