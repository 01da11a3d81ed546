"""Sample-quality metrics for ``ganforge evaluate``: the math on feature and probability arrays.

Every function here takes NumPy arrays or torch tensors of features / class probabilities that something else
extracted (no models, images or files, except the statistics cache of ``RunningStats``):

* ``frechet``: FID (Heusel et al. 2017) -- ``RunningStats`` (streaming float64 mean / covariance, ``.npz``
  cache) and ``frechet_distance``.
* ``kid``: KID (Binkowski et al. 2018) -- unbiased polynomial-kernel MMD^2 over random subsets.
* ``inception_score``: IS (Salimans et al. 2016).
* ``prdc``: improved precision / recall (Kynkäänniemi et al. 2019), density / coverage (Naeem et al. 2020).
* ``modes``: mode coverage and KL to the reference histogram (Stacked MNIST, 2-D mixtures; VEEGAN / PacGAN).

Importing this package needs only NumPy: torch is imported when a k-NN metric runs; SciPy and torch-fidelity
are not used.
"""
from __future__ import annotations

from ganforge.metrics.frechet import RunningStats, frechet_distance, trace_sqrt_product
from ganforge.metrics.inception_score import inception_score
from ganforge.metrics.kid import kernel_inception_distance, mmd2_unbiased, polynomial_kernel
from ganforge.metrics.modes import class_coverage, histogram_kl, stacked_mnist_modes, synthetic_modes
from ganforge.metrics.prdc import drops_modes, expected_coverage, knn_radii, prdc, precision_recall

__all__ = [
    "RunningStats",
    "class_coverage",
    "frechet_distance",
    "histogram_kl",
    "inception_score",
    "kernel_inception_distance",
    "knn_radii",
    "mmd2_unbiased",
    "polynomial_kernel",
    "prdc",
    "drops_modes",
    "expected_coverage",
    "precision_recall",
    "stacked_mnist_modes",
    "synthetic_modes",
    "trace_sqrt_product",
]
