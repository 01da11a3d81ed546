"""``ganforge evaluate``: score a run directory, an ``.npz`` of samples or a folder of images against a reference.

Sources of generated images come in any size and shape (H != W included), 1 or 3 channels; the scoring itself is
``metrics/pipeline.py``, the reference ``train/reference.py``. A translation run is scored on its own held-out
pairs (``apps/translate.py``). The result is what ``eval.json`` holds.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from ganforge.errors import UserError
from ganforge.families.outputs import output_of
from ganforge.apps.inputs import load_samples_npz
from ganforge.metrics.pipeline import (ImageSource, check_side, class_shares, collect, compute, from_uint8_nhwc,
                                       label_accuracy)
from ganforge.metrics.registry import needs_channel_classes, needs_features, parse_metrics
from ganforge.train.reference import fit_images, reference_features, reference_source


def _run_source(path: Path, n: int, seed: int, device: str) -> ImageSource:
    """A run directory: ``n`` images from its generator, at the model's size and channels."""
    from ganforge.apps.sampling import load_generator

    g = load_generator(path, device=device)
    mc = g.config.model
    if not output_of(mc).images:
        raise UserError(f"{path} generates 2D points: use 'ganforge bench coverage' for point metrics")

    k = g.num_classes  # conditional: image i is drawn for class i mod k, so every class is equally present

    def batches(bs: int) -> Iterator[torch.Tensor]:
        for i in range(0, n, bs):
            m = min(bs, n - i)
            labels = None if k is None else [(i + j) % k for j in range(m)]
            # each batch its own seed: deterministic, and no n-sized latent tensor in memory
            yield g.sample(m, seed=seed * 1_000_003 + i, labels=labels)

    return ImageSource(f"run {path}", mc.channels, mc.image_size, mc.image_size, n, batches,
                       labels=None if k is None else np.arange(n) % k, num_classes=k)

def _npz_source(path: Path, n: int) -> ImageSource:
    """A samples file: its first ``n`` images, at their own size and channels."""
    arr = load_samples_npz(path)[:n]

    def batches(bs: int) -> Iterator[torch.Tensor]:
        for i in range(0, len(arr), bs):
            yield from_uint8_nhwc(arr[i:i + bs])

    _, h, w, c = arr.shape
    return ImageSource(f"samples {path}", c, h, w, len(arr), batches)

def generated_source(spec: str | Path, n: int, seed: int = 0, device: str = "cpu") -> ImageSource:
    """RUN_DIR, SAMPLES.npz or FOLDER -> ImageSource of (up to) ``n`` images, at the source's own shape.

    A folder is read at the size and channels of its first readable image (grey modes -> 1 channel), since
    generated images share one shape; a file of another shape is resized and centre-cropped to it.
    """
    path = Path(spec)
    if path.is_dir() and (path / "config.yaml").is_file():
        src = _run_source(path, n, seed, device)
    elif path.suffix.lower() == ".npz":
        src = _npz_source(path, n)
    elif path.is_dir():
        from ganforge.data import folder_shape

        h, w, c = folder_shape(path)
        src = reference_source(f"folder:{path}", (h, w), c, n)
    else:
        raise UserError(f"{spec}: expected a run directory, a .npz of samples, or a folder of images")
    check_side(str(path), src.height, src.width)
    return src

def evaluate(source: str | Path, ref: str, metrics: Sequence[str] = ("fid",), n: int = 10_000,
             extractor: str = "auto", batch_size: int = 250, seed: int = 0, device: str = "cpu",
             data_root: str = "data", download: bool = False, inception_weights: Optional[str] = None,
             use_cache: bool = True, log=print) -> dict:
    """Everything ``ganforge evaluate`` prints and writes to ``eval.json``."""
    from ganforge.data.build import digits_per_channel
    from ganforge.devices import pick_device
    from ganforge.metrics.extractors import get_extractor, resolve

    if _is_translation_run(Path(source)):  # image -> image: scored on its own held-out pairs
        from ganforge.apps.translate import evaluate_run

        return evaluate_run(Path(source), device, limit=n)
    metrics = parse_metrics(metrics)
    ref = ref.strip()
    name = resolve(extractor, ref)
    dev = pick_device(device)
    t0 = time.perf_counter()
    gen_src = generated_source(source, n, seed=seed, device=str(dev))
    ext = get_extractor(name, dev, inception_weights=inception_weights,
                        reference=lambda: fit_images(ref, gen_src.hw, gen_src.channels, data_root, download))
    per_channel = needs_channel_classes(metrics, digits_per_channel(ref))
    keep = needs_features(metrics)
    if keep:  # both sides' features are held at once for KID and precision/recall
        from ganforge.memory import require_memory

        kept = "/".join(m for m in metrics if needs_features([m]))
        require_memory(2 * gen_src.count * 4 * getattr(ext, "feature_dim", 2048), f"--n {gen_src.count:,} with {kept}",
                       f"use a smaller --n (10,000 is the usual sample), or drop {kept.replace('/', ',')} from --metrics")
    gen = collect(gen_src, ext, batch_size, keep_features=keep, per_channel=per_channel)
    ref_c = reference_features(ref, gen_src.hw, gen_src.channels, n, ext, batch_size, data_root, download,
                               use_cache=use_cache, log=log)
    values = compute(metrics, gen, ref_c, name, ref, seed=seed)
    values.update(label_accuracy(gen_src, gen.probs, name))
    values.update(_classifier_metrics(Path(source), str(dev)))
    h, w = gen_src.hw
    shares = class_shares(gen.probs) if "min_class_share" in values else {}
    return {
        "source": str(source), "ref": ref, "extractor": name, "n_generated": gen.n, "n_reference": ref_c.n,
        "image_size": h if h == w else None, "image_height": h, "image_width": w, "channels": gen_src.channels,
        "reference_prep": ref_c.prep, "seed": seed, "metrics": values, "seconds": round(time.perf_counter() - t0, 2),
        **shares,
    }

def _is_translation_run(source: Path) -> bool:
    if not (source.is_dir() and (source / "config.yaml").is_file()):
        return False
    from ganforge.config import load_run_config
    from ganforge.families import get_family

    return get_family(load_run_config(source).model.family).translation

def _classifier_metrics(source: Path, device: str) -> dict[str, float]:
    """A semi-supervised run's accuracy on its data's held-out test split (its discriminator is a classifier)."""
    if not (source.is_dir() and (source / "config.yaml").is_file()):
        return {}
    from ganforge.config import load_run_config
    from ganforge.families import get_family

    if not get_family(load_run_config(source).model.family).classifier:
        return {}
    from ganforge.apps.classify import held_out_accuracy

    accuracy, n = held_out_accuracy(source, device)
    return {"test_accuracy": accuracy, "n_test": float(n)}

def eval_json_path(source: str | Path) -> Path:
    p = Path(source)
    if p.is_dir():
        return p / "eval.json" if (p / "config.yaml").is_file() else p.parent / f"{p.name}.eval.json"
    return p.with_name(p.stem + ".eval.json")
