"""Every metric ganforge computes, one entry each: its name, what it writes, which way is better, whether it keeps
the features, and how it is computed.

Everything else (``--metrics`` and ``eval.metrics`` validation, ``ganforge runs`` sorting, the best checkpoint,
the one-line headline, what ``collect`` keeps) reads this table, so a new metric is one ``register`` call here.
``Output`` keys are written as ``key[EXTRACTOR]`` when ``labelled`` (``fid[mnist-cnn]``: numbers from different
feature spaces never share a name), plain otherwise (``classes_covered``).

Keys that other scorers write (a translator's L1, a semi-supervised run's test accuracy) are registered as outputs
without a metric, so their direction is known too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ganforge.errors import UserError


@dataclass(frozen=True)
class Output:
    """One number a metric writes."""

    key: str
    higher_is_better: bool
    headline: str = ""  # its format in the one-line summary ("" = not shown there)
    labelled: bool = True  # written as key[EXTRACTOR]


@dataclass(frozen=True)
class Context:
    """What a metric may need beyond the two sides' features."""

    extractor: str
    seed: int = 0
    channel_modes: bool = False  # each channel is its own labelled item (Stacked MNIST)
    training: Any = None  # the training images' Collected (features and pixels): the copy check's other side
    details: dict = field(default_factory=dict)  # what a metric keeps beyond its numbers, by metric name


@dataclass(frozen=True)
class Metric:
    """A selectable metric (``--metrics NAME``). ``compute(gen, ref, ctx)`` returns ``{output key: value}``."""

    name: str
    outputs: tuple[Output, ...]
    needs_features: bool  # both sides' features kept in memory (k-NN and kernel metrics), not only mean/covariance
    compute: Callable
    needs_channel_classes: bool = False  # reads each channel's class when the reference holds one per channel
    help: str = ""
    needs_training: bool = False  # compared with the training images themselves (features and pixels), not the ref
    needs_classes: bool = False  # reads the extractor's class head, meaningful where its classes are the data's


METRICS: dict[str, Metric] = {}
OUTPUTS: dict[str, Output] = {}


def register(metric: Optional[Metric] = None, outputs: Sequence[Output] = ()) -> None:
    """Add a metric (and its outputs), or outputs other scorers write."""
    for out in (metric.outputs if metric else ()) + tuple(outputs):
        OUTPUTS.setdefault(out.key, out)
    if metric is not None:
        METRICS[metric.name] = metric


def _fid(gen, ref, ctx: Context) -> dict[str, float]:
    from ganforge.metrics.frechet import frechet_distance

    return {"fid": float(frechet_distance(gen.stats.mean, gen.stats.cov, ref.stats.mean, ref.stats.cov))}


def _kid(gen, ref, ctx: Context) -> dict[str, float]:
    from ganforge.metrics.kid import kernel_inception_distance

    size = min(1000, gen.n, ref.n)
    mean, std = kernel_inception_distance(ref.features, gen.features, subsets=100, subset_size=size, seed=ctx.seed)
    return {"kid": float(mean), "kid_std": float(std)}


def _is(gen, ref, ctx: Context) -> dict[str, float]:
    from ganforge.metrics.inception_score import inception_score

    if gen.probs is None:
        raise UserError(f"extractor {ctx.extractor} has no class head: IS needs one")
    mean, std = inception_score(gen.probs, splits=10 if gen.n >= 1000 else 1)
    return {"is": float(mean), "is_std": float(std)}


def _prc(gen, ref, ctx: Context) -> dict[str, float]:
    from ganforge.metrics.prdc import PRDC_K, prdc

    return {k: float(v) for k, v in prdc(ref.features, gen.features, k=PRDC_K).items()}


def _coverage(gen, ref, ctx: Context) -> dict[str, float]:
    from ganforge.metrics import modes

    if ctx.channel_modes:
        if gen.channel_preds is None:
            raise UserError("Stacked MNIST coverage needs 3-channel images and the mnist-cnn extractor")
        p = gen.channel_preds
        res = modes.stacked_mnist_modes(p[:, 0], p[:, 1], p[:, 2])
        return {"modes_covered": float(res["modes_covered"]), "modes_kl": float(res["kl"])}
    if gen.probs is None or ref.probs is None:
        raise UserError(f"class coverage needs a classifier: use --extractor mnist-cnn (got {ctx.extractor})")
    k = gen.probs.shape[1]
    pred = gen.probs.argmax(1)
    ref_hist = np.bincount(ref.probs.argmax(1), minlength=k) / len(ref.probs)
    res = modes.class_coverage(pred, k, ref_hist=ref_hist)
    return {"classes_covered": float(res["classes_covered"]), "class_kl": float(res["kl"]),
            "min_class_share": float(np.bincount(pred, minlength=k).min() / len(gen.probs))}


def _copies(gen, ref, ctx: Context) -> dict[str, float]:
    from ganforge.metrics.copies import copy_check

    train = ctx.training
    if train is None or train.features is None or train.pixels is None or gen.pixels is None:
        raise UserError("the copy check needs the training images: score a run directory, or pass them as --ref")
    check = copy_check(gen.features, train.features, gen.pixels, train.pixels, seed=ctx.seed)
    ctx.details["copies"] = check
    return {"copies": check.share}


register(Metric("fid", (Output("fid", False, "FID {:.2f}"),), False, _fid,
                help="Fréchet distance of the feature means and covariances"))
register(Metric("kid", (Output("kid", False), Output("kid_std", False)), True, _kid,
                help="kernel (MMD) distance, unbiased at small N"))
register(Metric("is", (Output("is", True), Output("is_std", False)), False, _is, needs_classes=True,
                help="Inception Score (needs a class head)"))
register(Metric("prc", (Output("precision", True, "precision {:.2f}"), Output("recall", True, "recall {:.2f}"),
                        Output("density", True), Output("coverage", True)), True, _prc,
                help="precision / recall / density / coverage (k-NN manifolds)"))
register(Metric("coverage", (Output("classes_covered", True, "classes {:.0f}", False),
                             Output("class_kl", False, "class KL {:.3f}", False),
                             Output("modes_covered", True, "modes {:.0f}", False),
                             Output("modes_kl", False, "", False),
                             Output("min_class_share", True, "", False)), False, _coverage,
                needs_channel_classes=True, needs_classes=True,
                help="classes (or Stacked MNIST modes) the classifier finds"))
register(Metric("copies", (Output("copies", False, "copies {:.1%}"),), True, _copies, needs_training=True,
                help="share of samples that copy a training image (features, confirmed in pixels)"))
# written by other scorers: a conditional run's labels, a translator, a semi-supervised classifier
register(outputs=(Output("label_accuracy", True, "label accuracy {:.1%}"), Output("accuracy", True, "digit kept {:.1%}", False),
                  Output("class_kept", True, "class kept {:.1%}", False), Output("l1", False, "L1 {:.4f}", False),
                  Output("cycle_l1", False, "cycle L1 {:.4f}", False), Output("psnr", True, "PSNR {:.2f} dB", False),
                  Output("fid_mnist_cnn", False, "FID {:.2f}", False), Output("test_accuracy", True, "", False)))


def base_name(key: str) -> str:
    """``fid[mnist-cnn]`` -> ``fid``."""
    return key.split("[", 1)[0]


def parse_metrics(text: str | Sequence[str]) -> list[str]:
    """``"fid,prc"`` or a list -> validated metric names; a one-line UserError naming the choices otherwise."""
    names = [m.strip().lower() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise UserError(f"unknown metric {bad[0] if bad else text!r}: choose from {','.join(METRICS)}")
    return names


def higher_is_better(key: str) -> bool:
    """The direction of an output, labelled or not (unknown keys are distances: lower is better)."""
    out = OUTPUTS.get(base_name(key))
    return bool(out and out.higher_is_better)


def is_better(key: str, new: float, old: Optional[float]) -> bool:
    """Whether ``new`` improves on ``old`` for ``key`` (any finite value beats none)."""
    if old is None or not math.isfinite(old):
        return math.isfinite(new)
    return new > old if higher_is_better(key) else new < old


def labelled(key: str, extractor: str) -> str:
    """The key as results hold it: ``fid`` -> ``fid[EXTRACTOR]``, ``classes_covered`` as is."""
    out = OUTPUTS.get(key)
    return f"{key}[{extractor}]" if out is None or out.labelled else key


def needs_features(metrics: Sequence[str]) -> bool:
    return any(METRICS[m].needs_features for m in metrics)


def needs_training(metrics: Sequence[str]) -> bool:
    return any(METRICS[m].needs_training for m in metrics)


def needs_channel_classes(metrics: Sequence[str], channel_modes: bool) -> bool:
    return channel_modes and any(METRICS[m].needs_channel_classes for m in metrics)


def compute(metrics: Sequence[str], gen, ref, ctx: Context) -> dict[str, float]:
    """Each metric's outputs, labelled: ``{"fid[mnist-cnn]": ..., "classes_covered": ...}``."""
    out: dict[str, float] = {}
    for name in metrics:
        for key, value in METRICS[name].compute(gen, ref, ctx).items():
            out[labelled(key, ctx.extractor)] = value
    return out


def headline_parts(values: dict) -> list[str]:
    """The headline outputs present in ``values``, formatted, in registration order."""
    parts = []
    for out in OUTPUTS.values():
        if not out.headline:
            continue
        hit = next((v for k, v in values.items() if base_name(k) == out.key and isinstance(v, (int, float))), None)
        if hit is not None:
            parts.append(out.headline.format(hit))
    return parts
