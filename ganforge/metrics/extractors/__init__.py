"""Feature extractors for the sample-quality metrics: one interface, found by name.

Every module in this package that defines ``EXTRACTORS`` (a tuple of ``ExtractorSpec``) is registered: a new
extractor is one new module here, nothing else to edit. Each takes images as generators produce them, float
(N, C, H, W) in [-1, 1], and returns ``{"features": (N, D) float32, "logits": (N, K) float32 or None}`` on the
CPU; its ``name`` labels every metric it feeds (``fid[mnist-cnn]``), since numbers from two feature spaces never
compare.

``auto`` picks per data, by measurement (``ganforge bench metric-agreement``, table in docs/BENCHMARKS.md): the
shipped digit classifier (``mnist-cnn``) for MNIST-like sets, since it knows the classes; ``ssl-conv`` for
everything else, an encoder trained self-supervised on the reference itself, which ranked image sets closest to a
class judge among the extractors that need no download (random-conv, random-conv-x4, raw pixels). ``inception-v3``
and ``dinov2-vit-b-14`` are never picked by ``auto``: they are for figures comparable with papers, and download.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Optional, Union

import torch

from ganforge.data.embedded import heldout_split  # noqa: F401  (re-exported: the classifier's split)
from ganforge.errors import UserError
from ganforge.metrics.extractors.base import Device, ExtractorSpec, FeatureExtractor, check_images  # noqa: F401
from ganforge.metrics.extractors.inception import (INCEPTION_ENV, INCEPTION_FILENAMES, INCEPTION_URL,  # noqa: F401
                                                   InceptionExtractor, resolve_inception_weights)
from ganforge.metrics.extractors.mnist_cnn import (FEATURE_DIM, MNIST_CNN_FILE, MNIST_CNN_FORMAT, MnistCNN,  # noqa: F401
                                                   MnistCnnExtractor, _shipped_weights, load_mnist_cnn,
                                                   mnist_cnn_metadata, prepare_digits, register_torch_fidelity)

AUTO_DIGITS = "mnist-cnn"
AUTO_OTHER = "ssl-conv"  # measured: see the module docstring

_REGISTRY: dict[str, ExtractorSpec] = {}


def registry() -> dict[str, ExtractorSpec]:
    """name -> spec, from every module of this package that declares ``EXTRACTORS`` (imported once)."""
    if not _REGISTRY:
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            if info.name.startswith("_") or info.name == "base":
                continue
            module = importlib.import_module(f"{__name__}.{info.name}")
            for spec in getattr(module, "EXTRACTORS", ()):
                _REGISTRY[spec.name] = spec
    return _REGISTRY


def extractor_names() -> tuple[str, ...]:
    return tuple(registry())


def check_name(name: str) -> str:
    """``name`` when it is ``auto`` or a registered extractor; else one line naming the choices."""
    if name != "auto" and name not in registry():
        raise UserError(f"unknown feature extractor {name!r}: choose one of auto, {', '.join(extractor_names())}")
    return name


def auto_extractor(ref_spec: str) -> str:
    """What ``auto`` means for a reference: the in-domain digit classifier for MNIST-like sets, else AUTO_OTHER."""
    from ganforge.data.build import holds_digits

    return AUTO_DIGITS if holds_digits(ref_spec) else AUTO_OTHER


def resolve(name: str, ref_spec: str) -> str:
    return auto_extractor(ref_spec) if name == "auto" else check_name(name)


def get_extractor(name: str, device: Device = "cpu", inception_weights=None, batch_size: Optional[int] = None,
                  weights=None, reference: Union[None, torch.Tensor, Callable[[], torch.Tensor]] = None) -> FeatureExtractor:
    """The extractor called ``name`` on ``device``; ``weights``: a local weights file where the extractor has one
    (``inception_weights``: the same, its older name). ``reference``: the reference images (or a function
    returning them), which an extractor that learns from the data (``ssl-conv``) needs and every other ignores."""
    check_name(name)
    if name == "auto":
        raise UserError("extractor 'auto' needs the reference data to pick: call resolve(name, ref) first")
    spec = registry()[name]
    kw: dict = {} if batch_size is None else {"batch_size": batch_size}
    if spec.fits_reference:
        kw["reference"] = reference
    return spec.build(device, weights if weights is not None else inception_weights, **kw)


def fits_reference(name: str) -> bool:
    """Whether extractor ``name`` learns from the reference images (then ``get_extractor`` needs ``reference=``)."""
    return name in registry() and registry()[name].fits_reference


EXTRACTOR_NAMES = extractor_names()
