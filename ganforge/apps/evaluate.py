"""``ganforge evaluate``: score a run directory, an ``.npz`` of samples or a folder of images against a reference.

Sources of generated images come in any size and shape (H != W included), 1 or 3 channels; the scoring itself is
``metrics/pipeline.py``, the reference ``train/reference.py``. A run directory's config is read once and its output
kind (``families/outputs.py``) picks how it is scored: an image run's samples drawn from its generator, a
translator's held-out pairs (``apps/translate.py``). The result is what ``eval.json`` holds, with its protocol
(extractor, weights hash, resize filter, counts, reference split) and, with the copy check, its closest pairs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from ganforge.errors import UserError
from ganforge.families.outputs import output_of
from ganforge.apps.inputs import load_samples_npz
from ganforge.metrics.pipeline import (Collected, ImageSource, check_side, class_shares, collect, compute,
                                       from_uint8_nhwc, label_accuracy)
from ganforge.metrics.registry import needs_channel_classes, needs_features, needs_training, parse_metrics
from ganforge.train.reference import (COPY_REF_MAX, open_extractor, protocol, reference_features, reference_source,
                                      training_source)

COPIES_PICTURE = "copies.png"
PAIRS_SHOWN = 8


@dataclass
class Run:
    """A run directory, its config read once."""

    path: Path
    cfg: object  # RunConfig

    @classmethod
    def open(cls, path: Path) -> "Run":
        from ganforge.config import load_run_config

        return cls(path, load_run_config(path))

    @property
    def family(self):
        from ganforge.families import get_family

        return get_family(self.cfg.model.family)


@dataclass
class Scorer:
    """One evaluation's settings and the ways a source is scored (an output kind picks its way: ``kind.score``)."""

    ref: str
    metrics: list[str]
    n: int = 10_000
    extractor: str = "auto"
    batch_size: int = 250
    seed: int = 0
    device: str = "cpu"
    data_root: str = "data"
    download: bool = False
    weights: Optional[str] = None
    use_cache: bool = True
    log: Callable[[str], None] = print
    fallback: Optional[str] = None  # an offline extractor to use when the chosen one cannot open
    copies_max: int = 0  # a run's copy check is added when its training set holds at most this many images
    pictures: Optional[Path] = None  # where copies.png goes (None: nowhere)
    own_classes_only: bool = False  # drop (not fail) class metrics unless the extractor's classes are the data's
    copy_check: object = field(default=None, init=False)  # the last CopyCheck, for callers that want it

    def images(self, run: Run) -> dict:
        """An image run: ``n`` samples from its generator against the reference, plus its training set for the
        copy check and a classifying family's held-out accuracy."""
        src = _run_source(run, self.n, self.seed, self.device)
        training = None
        if self.copies_max or needs_training(self.metrics):
            training, total = training_source(run.cfg.data, run.cfg.model, run.cfg.train.seed)
            if "copies" not in self.metrics and total <= self.copies_max:
                self.metrics = [*self.metrics, "copies"]
            if not needs_training(self.metrics):
                training = None
        result = self.score(src, training)
        if run.family.classifier:  # its discriminator classifies: accuracy on its data's held-out test split
            from ganforge.apps.classify import held_out_accuracy

            accuracy, n = held_out_accuracy(run.path, self.device, run.cfg)
            result["metrics"].update(test_accuracy=accuracy, n_test=float(n))
        return result

    def translations(self, run: Run) -> dict:
        """A translator: its held-out pairs translated and compared with their targets."""
        from ganforge.apps.translate import evaluate_run
        from ganforge.metrics.extractors import get_extractor

        result = evaluate_run(run.path, self.device, limit=self.n, cfg=run.cfg)
        ext = get_extractor(result["extractor"]) if result["extractor"] != "none" else None
        result["protocol"] = protocol(ext, result["n_generated"], result["n_reference"], result["ref"],
                                      "test" if "split test" in result["ref"] else "train") if ext else {
            "extractor": "none", "weights": "none", "resize_filter": "none (pixels at the model's size)",
            "n_generated": result["n_generated"], "n_reference": result["n_reference"], "reference": result["ref"],
            "reference_split": "test" if "split test" in result["ref"] else "train"}
        return result

    def files(self, src: ImageSource) -> dict:
        """Samples from a file or folder; the copy check, when asked for, against the reference data itself."""
        training = None
        if needs_training(self.metrics):
            training = reference_source(self.ref, src.hw, src.channels, COPY_REF_MAX, self.data_root, self.download)
        return self.score(src, training)

    def score(self, src: ImageSource, training: Optional[ImageSource]) -> dict:
        """The metrics of ``src`` against the reference (and ``training``, for the copy check)."""
        from ganforge.data.build import digits_per_channel
        from ganforge.devices import pick_device

        check_side(src.describe, src.height, src.width)
        dev = pick_device(self.device)
        ext, name = open_extractor(self.extractor, self.ref, dev, self.weights, self.fallback, self.log,
                                   shape=(src.hw, src.channels), data_root=self.data_root, download=self.download)
        skipped = self._class_metrics_without_classes(ext, name) if self.own_classes_only else {}
        self.metrics = [m for m in self.metrics if m not in skipped]
        t0 = time.perf_counter()
        keep = needs_features(self.metrics)
        if keep:  # both sides' features are held at once for KID, precision/recall and the copy check
            _require_memory(self.metrics, src.count, getattr(ext, "feature_dim", 2048))
        per_channel = needs_channel_classes(self.metrics, digits_per_channel(self.ref))
        copies = training is not None
        gen = collect(src, ext, self.batch_size, keep_features=keep, per_channel=per_channel, keep_pixels=copies)
        ref_c = reference_features(self.ref, src.hw, src.channels, self.n, ext, self.batch_size, self.data_root,
                                   self.download, use_cache=self.use_cache, log=self.log)
        train_c = collect(training, ext, self.batch_size, keep_features=True, keep_pixels=True) if copies else None
        details: dict = {}
        values = compute(self.metrics, gen, ref_c, name, self.ref, seed=self.seed, training=train_c, details=details)
        values.update(label_accuracy(src, gen.probs, name))
        h, w = src.hw
        more = {"copy_reference": f"{training.describe} ({training.prep})"} if copies else {}
        result = {
            "source": src.describe, "ref": self.ref, "extractor": name, "n_generated": gen.n, "n_reference": ref_c.n,
            "image_size": h if h == w else None, "image_height": h, "image_width": w, "channels": src.channels,
            "reference_prep": ref_c.prep, "seed": self.seed, "metrics": values,
            "protocol": protocol(ext, gen.n, ref_c.n, self.ref, "all", **more),
            **(class_shares(gen.probs) if "min_class_share" in values else {}),
            **({"not_scored": skipped} if skipped else {}),
        }
        if "copies" in details:
            self._copies(details["copies"], gen, train_c, result)
        diversity = modes_dropped(values, ref_c.n, gen.n)
        if diversity is not None:
            result["diversity"] = diversity
            if diversity["modes_dropped"]:
                self.log(f"warning: the samples look like the data (density {diversity['density']:.2f}) but cover "
                         f"{diversity['coverage']:.0%} of it, where a sample of the data itself covers "
                         f"{diversity['expected_coverage']:.0%}: modes are dropped (one class, or a few images "
                         "repeated); look at the samples")
        result["seconds"] = round(time.perf_counter() - t0, 2)
        return result

    def _class_metrics_without_classes(self, ext, name: str) -> dict[str, str]:
        """The selected metrics that read a class head, when the extractor's classes are not the data's (a digit
        classifier on icons, ImageNet's on faces, or no head at all): metric -> why it is left out."""
        from ganforge.metrics.extractors import resolve
        from ganforge.metrics.registry import METRICS

        if getattr(ext, "num_classes", None) and name == resolve("auto", self.ref):
            return {}
        return {m: f"{name} has no classifier of {self.ref}'s classes" for m in self.metrics
                if METRICS[m].needs_classes}

    def _copies(self, check, gen: Collected, train: Collected, result: dict) -> None:
        """eval.json's copy-check block, a warning when the share is high, and copies.png."""
        from ganforge.metrics.copies import WARN_SHARE

        self.copy_check = check
        result["copies"] = check.summary(PAIRS_SHOWN)
        if check.share > WARN_SHARE:
            self.log(f"warning: {check.share:.1%} of the samples copy a training image (over {WARN_SHARE:.0%}); "
                     f"the closest pairs are in {COPIES_PICTURE}: the model may be memorising its data")
        if self.pictures is not None:
            from ganforge import viz

            idx = check.closest(PAIRS_SHOWN)
            caps = [f"{'COPY ' if check.flagged[i] else ''}rms {check.pixel_distance[i]:.3f}" for i in idx]
            dest = self.pictures / COPIES_PICTURE if self.pictures.is_dir() else self.pictures
            viz.save_copy_pairs(gen.pixels[idx], train.pixels[check.nearest[idx]], caps, dest)
            result["copies"]["picture"] = dest.name


def modes_dropped(values: dict, n_ref: int, n_gen: int) -> Optional[dict]:
    """eval.json's diversity check, from the ``prc`` metric's coverage and density (None without them): the
    samples drop modes when they cover well under what a sample of the data itself would (``drops_modes``)."""
    from ganforge.metrics.prdc import PRDC_K, drops_modes, expected_coverage
    from ganforge.metrics.registry import base_name

    found = {base_name(k): float(v) for k, v in values.items() if base_name(k) in ("coverage", "density")}
    if len(found) < 2 or min(n_ref, n_gen) <= PRDC_K:  # k neighbours need k + 1 samples a side
        return None
    expected = expected_coverage(n_ref, n_gen, k=PRDC_K)  # at the k the prc metric scored with
    return {"coverage": found["coverage"], "expected_coverage": round(expected, 4), "density": found["density"],
            "modes_dropped": drops_modes(found["coverage"], found["density"], expected)}


def _require_memory(metrics: Sequence[str], count: int, dim: int) -> None:
    from ganforge.memory import require_memory

    kept = "/".join(m for m in metrics if needs_features([m]))
    require_memory(2 * count * 4 * dim, f"--n {count:,} with {kept}",
                   f"use a smaller --n (10,000 is the usual sample), or drop {kept.replace('/', ',')} from --metrics")


def _run_source(run: Run, n: int, seed: int, device: str) -> ImageSource:
    """A run directory: ``n`` images from its generator, at the model's size and channels."""
    from ganforge.apps.sampling import generator_from_checkpoint
    from ganforge.checkpoint import load_newest
    from ganforge.devices import pick_device

    dev = pick_device(device)  # the config is read already: straight to the newest good checkpoint
    g = load_newest(run.path / "checkpoints", lambda ckpt: generator_from_checkpoint(ckpt, dev))
    mc = g.config.model
    k = g.num_classes  # conditional: image i is drawn for class i mod k, so every class is equally present

    def batches(bs: int) -> Iterator[torch.Tensor]:
        for i in range(0, n, bs):
            m = min(bs, n - i)
            labels = None if k is None else [(i + j) % k for j in range(m)]
            # each batch its own seed: deterministic, and no n-sized latent tensor in memory
            yield g.sample(m, seed=seed * 1_000_003 + i, labels=labels)

    return ImageSource(f"run {run.path}", mc.channels, mc.image_size, mc.image_size, n, batches,
                       labels=None if k is None else np.arange(n) % k, num_classes=k)


def _npz_source(path: Path, n: int) -> ImageSource:
    """A samples file: its first ``n`` images, at their own size and channels."""
    arr = load_samples_npz(path)[:n]

    def batches(bs: int) -> Iterator[torch.Tensor]:
        for i in range(0, len(arr), bs):
            yield from_uint8_nhwc(arr[i:i + bs])

    _, h, w, c = arr.shape
    return ImageSource(f"samples {path}", c, h, w, len(arr), batches)


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.yaml").is_file()


def generated_source(spec: str | Path, n: int, seed: int = 0, device: str = "cpu") -> ImageSource:
    """SAMPLES.npz or FOLDER (or a RUN_DIR of an image family) -> ImageSource of (up to) ``n`` images.

    A folder is read at the size and channels of its first readable image (grey modes -> 1 channel), since
    generated images share one shape; a file of another shape is resized and centre-cropped to it.
    """
    path = Path(spec)
    if is_run_dir(path):
        run = Run.open(path)
        if not output_of(run.cfg.model).images:
            raise UserError(f"{path} generates 2D points: use 'ganforge bench coverage' for point metrics")
        src = _run_source(run, n, seed, device)
    elif path.suffix.lower() == ".npz":
        src = _npz_source(path, n)
    elif path.is_dir():
        from ganforge.data import folder_shape

        h, w, c = folder_shape(path)
        src = reference_source(f"folder:{path}", (h, w), c, n)
        src.describe = f"folder {path}"
    else:
        raise UserError(f"{spec}: expected a run directory, a .npz of samples, or a folder of images")
    check_side(str(path), src.height, src.width)
    return src


def evaluate(source: str | Path, ref: str, metrics: Sequence[str] = ("fid",), n: int = 10_000,
             extractor: str = "auto", batch_size: int = 250, seed: int = 0, device: str = "cpu",
             data_root: str = "data", download: bool = False, inception_weights: Optional[str] = None,
             use_cache: bool = True, log=print, fallback: Optional[str] = None, copies_max: int = 0,
             pictures: Optional[Path] = None, own_classes_only: bool = False) -> dict:
    """Everything ``ganforge evaluate`` prints and writes to ``eval.json``. ``fallback``: an offline extractor for
    when ``extractor`` cannot open; ``copies_max``: a run's copy check is on when its training set holds at most
    this many images; ``pictures``: a folder (or file) for copies.png; ``own_classes_only``: class metrics
    (coverage, IS) are left out, not failed, where the extractor's classes are not the data's."""
    scorer = Scorer(ref.strip(), parse_metrics(metrics), n, extractor, batch_size, seed, device, data_root, download,
                    inception_weights, use_cache, log, fallback, copies_max, pictures, own_classes_only)
    path = Path(source)
    if is_run_dir(path):
        run = Run.open(path)
        result = output_of(run.cfg.model).score(scorer, run)
    else:
        result = scorer.files(generated_source(path, n, seed=seed, device=device))
    result["source"] = str(source)
    return result


def eval_json_path(source: str | Path) -> Path:
    p = Path(source)
    if p.is_dir():
        return p / "eval.json" if (p / "config.yaml").is_file() else p.parent / f"{p.name}.eval.json"
    return p.with_name(p.stem + ".eval.json")


def pictures_path(source: str | Path) -> Path:
    """Where ``ganforge evaluate`` puts copies.png: in a run directory, else beside the source."""
    p = Path(source)
    if is_run_dir(p):
        return p
    return p.parent / f"{p.stem if p.suffix else p.name}.{COPIES_PICTURE}"
