"""``ganforge evaluate``: stream generated and reference images through a feature extractor, compute metrics.

Sources of generated images: a run directory (its generator), an ``.npz`` (``arr_0`` uint8 N,H,W,C) or a folder
of images, at any size and shape (H != W included), 1 or 3 channels. The reference is a data spec
(``mnist-embedded``, ``cifar10``, ``folder:PATH``...), built at the generated images' own (H, W) and channels
without any model config; what that took (``"padded 28x28 -> 32x32"``) is reported as ``reference_prep``.
Images flow in batches: FID needs only running mean/covariance (memory flat in N); KID and precision/recall
keep the features (N x D floats, e.g. 10,000 x 128 = 5 MB for mnist-cnn).

Every metric is labelled with the extractor that produced it, e.g. ``fid[mnist-cnn]`` vs ``fid[inception-v3]``:
in-domain numbers are for comparing ganforge runs with each other, Inception numbers for comparing with papers.
Reference statistics are cached on disk, keyed by dataset, H x W, channels, extractor and N.
"""
from __future__ import annotations

import math
import os
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from ganforge.errors import UserError

METRICS = ("fid", "kid", "is", "prc", "coverage")
DIGIT_SETS = ("mnist-embedded", "mnist", "stacked-mnist")
HIGHER_IS_BETTER = ("is", "precision", "recall", "density", "coverage", "classes_covered", "modes_covered",
                    "label_accuracy", "min_class_share")
MIN_SIDE = 8  # smaller images carry too little for any extractor (both resize up, to 28 or 299)


def cache_dir() -> Path:
    return Path(os.environ.get("GANFORGE_CACHE", Path.home() / ".cache" / "ganforge")) / "refstats"


def parse_metrics(text: str | Sequence[str]) -> list[str]:
    names = [m.strip().lower() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise UserError(f"unknown metric {bad[0] if bad else text!r}: choose from {','.join(METRICS)}")
    return names


def auto_extractor(ref_spec: str) -> str:
    """The in-domain digit classifier for MNIST-like references, Inception-v3 for everything else."""
    return "mnist-cnn" if ref_spec.strip().lower() in DIGIT_SETS else "inception-v3"


def metric_is_better(name: str, new: float, old: Optional[float]) -> bool:
    """Lower is better for distances (fid, kid, kl), higher for scores (is, precision, recall, coverage)."""
    if old is None or not math.isfinite(old):
        return math.isfinite(new)
    base = name.split("[", 1)[0]
    return new > old if base in HIGHER_IS_BETTER else new < old


# ------------------------------------------------------------------------------------------------ sources


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


def _from_uint8_nhwc(arr: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()
    return t / 127.5 - 1.0


def _check_side(what: str, height: int, width: int) -> None:
    """Images too small to evaluate fail here, in one line, rather than somewhere inside an extractor."""
    if min(height, width) < MIN_SIDE:
        raise UserError(f"{what}: images are {height}x{width}, too small to evaluate (at least {MIN_SIDE} px a side)")


def _run_source(path: Path, n: int, seed: int, device: str) -> ImageSource:
    """A run directory: ``n`` images from its generator, at the model's size and channels."""
    from ganforge.sampling import load_generator

    g = load_generator(path, device=device)
    mc = g.config.model
    if getattr(mc, "point_dim", None) is not None:
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


def _load_npz(path: Path) -> np.ndarray:
    """``arr_0`` of a samples file, checked: uint8 (N, H, W, C), N >= 1, C = 1 or 3."""
    if not path.is_file():
        raise UserError(f"samples file {path} does not exist")
    try:
        with np.load(path) as z:
            if "arr_0" not in z:
                raise UserError(f"{path} has no arr_0: expected uint8 (N, H, W, C) as written by 'ganforge sample'")
            arr = z["arr_0"]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:  # not an npz, or arr_0 needs pickle
        raise UserError(f"cannot read {path} as .npz: {' '.join(str(exc).split())}") from None
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] not in (1, 3) or arr.shape[0] == 0:
        raise UserError(f"{path}: arr_0 is {arr.dtype} {arr.shape}, expected uint8 (N, H, W, C) with N >= 1 and "
                        "C = 1 or 3")
    return arr


def _npz_source(path: Path, n: int) -> ImageSource:
    """A samples file: its first ``n`` images, at their own size and channels."""
    arr = _load_npz(path)[:n]

    def batches(bs: int) -> Iterator[torch.Tensor]:
        for i in range(0, len(arr), bs):
            yield _from_uint8_nhwc(arr[i:i + bs])

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
    _check_side(str(path), src.height, src.width)
    return src


def reference_source(spec: str, size: int | tuple[int, int], channels: int, n: int, data_root: str = "data",
                     download: bool = False) -> ImageSource:
    """The data ``spec`` names, built straight at ``size`` (int or (h, w)) and ``channels``: no model config, so
    no model's size rules apply."""
    from ganforge.data import build_spec
    from ganforge.data.imageops import as_hw

    h, w = as_hw(size)
    ds = build_spec(spec, data_root, download, channels, (h, w))
    if ds.kind != "images":
        raise UserError(f"reference {spec!r} is not an image set")
    count = min(n, len(ds))

    def batches(bs: int) -> Iterator[torch.Tensor]:
        if ds.tensor is not None:
            for i in range(0, count, bs):
                yield ds.tensor[i:min(i + bs, count)]
        else:
            loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, range(count)), batch_size=bs)
            for x, _ in loader:
                yield x

    return ImageSource(f"data {spec}", channels, h, w, count, batches, prep=ds.prep)


# ------------------------------------------------------------------------------------------------ features


@dataclass
class Collected:
    stats: object  # RunningStats
    features: Optional[np.ndarray]
    probs: Optional[np.ndarray]
    channel_preds: Optional[np.ndarray] = None  # (N, C) digit per channel, for Stacked MNIST
    n: int = 0
    prep: str = ""  # the source's ImageSource.prep


def collect(source: ImageSource, extractor, batch_size: int, keep_features: bool, per_channel: bool = False,
            progress: Optional[Callable[[int], None]] = None) -> Collected:
    from ganforge.metrics.frechet import RunningStats

    stats = RunningStats()
    feats, probs, chans = [], [], []
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
            n += batch.shape[0]
            if progress:
                progress(batch.shape[0])
    return Collected(stats, np.concatenate(feats) if feats else None, np.concatenate(probs) if probs else None,
                     np.concatenate(chans) if chans else None, n, source.prep)


def shape_text(hw: tuple[int, int]) -> str:
    """'32px' for a square, '28x40px' otherwise (the cache key keeps the square form it always had)."""
    h, w = hw
    return f"{h}px" if h == w else f"{h}x{w}px"


def _cache_key(ref: str, hw: tuple[int, int], channels: int, extractor: str, n: int) -> str:
    raw = f"{ref}-{shape_text(hw)}-{channels}ch-{extractor}-n{n}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw)


def reference_features(ref: str, size: int | tuple[int, int], channels: int, n: int, extractor, batch_size: int,
                       data_root: str, download: bool, use_cache: bool = True, log=print) -> Collected:
    """Reference statistics and features, from the on-disk cache when present (keyed by data, H x W, channels,
    extractor and N). ``size``: an int (square) or (h, w)."""
    from ganforge.data.imageops import as_hw
    from ganforge.io_utils import atomic_target
    from ganforge.metrics.frechet import RunningStats

    key = _cache_key(ref, as_hw(size), channels, extractor.name, n)
    path = cache_dir() / f"{key}.npz"
    cacheable = use_cache and not ref.startswith("folder:")  # a folder's content may change under the same name
    if cacheable and path.is_file():
        try:
            with np.load(path) as z:
                if "prep" in z.files:  # older caches lack it: recomputed quietly, so the prep note is never lost
                    stats = RunningStats.from_moments(z["mu"], z["sigma"], int(z["n"]))
                    return Collected(stats, z["features"], z["probs"] if "probs" in z.files else None, None,
                                     int(z["n"]), str(z["prep"]))
        except Exception as exc:  # a stale or broken cache is recomputed, never trusted
            log(f"warning: ignoring reference cache {path}: {exc}")
    src = reference_source(ref, size, channels, n, data_root, download)
    got = collect(src, extractor, batch_size, keep_features=True)
    if cacheable:
        arrays = {"mu": got.stats.mean, "sigma": got.stats.cov, "n": np.array(got.n), "features": got.features,
                  "prep": np.array(got.prep)}
        if got.probs is not None:
            arrays["probs"] = got.probs
        with atomic_target(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
    return got


# ------------------------------------------------------------------------------------------------ metrics


def compute(metrics: Sequence[str], gen: Collected, ref: Collected, extractor_name: str, ref_spec: str,
            num_classes: int = 10, seed: int = 0) -> dict[str, float]:
    from ganforge.metrics import modes
    from ganforge.metrics.frechet import frechet_distance
    from ganforge.metrics.inception_score import inception_score
    from ganforge.metrics.kid import kernel_inception_distance
    from ganforge.metrics.prdc import prdc

    tag = f"[{extractor_name}]"
    out: dict[str, float] = {}
    for m in metrics:
        if m == "fid":
            out["fid" + tag] = float(frechet_distance(gen.stats.mean, gen.stats.cov, ref.stats.mean, ref.stats.cov))
        elif m == "kid":
            size = min(1000, gen.n, ref.n)
            mean, std = kernel_inception_distance(ref.features, gen.features, subsets=100, subset_size=size, seed=seed)
            out["kid" + tag], out["kid_std" + tag] = float(mean), float(std)
        elif m == "is":
            if gen.probs is None:
                raise UserError(f"extractor {extractor_name} has no class head: IS needs one")
            mean, std = inception_score(gen.probs, splits=10 if gen.n >= 1000 else 1)
            out["is" + tag], out["is_std" + tag] = float(mean), float(std)
        elif m == "prc":
            res = prdc(ref.features, gen.features, k=5)
            for k, v in res.items():
                out[f"{k}{tag}"] = float(v)
        elif m == "coverage":
            if ref_spec == "stacked-mnist":
                if gen.channel_preds is None:
                    raise UserError("Stacked MNIST coverage needs 3-channel images and the mnist-cnn extractor")
                p = gen.channel_preds
                res = modes.stacked_mnist_modes(p[:, 0], p[:, 1], p[:, 2])
                out["modes_covered"] = float(res["modes_covered"])
                out["modes_kl"] = float(res["kl"])
            else:
                if gen.probs is None or ref.probs is None:
                    raise UserError(f"class coverage needs a classifier: use --extractor mnist-cnn (got {extractor_name})")
                k = gen.probs.shape[1]
                ref_hist = np.bincount(ref.probs.argmax(1), minlength=k) / len(ref.probs)
                res = modes.class_coverage(gen.probs.argmax(1), k, ref_hist=ref_hist)
                out["classes_covered"] = float(res["classes_covered"])
                out["class_kl"] = float(res["kl"])
                out["min_class_share"] = float(np.bincount(gen.probs.argmax(1), minlength=k).min() / len(gen.probs))
    return out


def evaluate(source: str | Path, ref: str, metrics: Sequence[str] = ("fid",), n: int = 10_000,
             extractor: str = "auto", batch_size: int = 250, seed: int = 0, device: str = "cpu",
             data_root: str = "data", download: bool = False, inception_weights: Optional[str] = None,
             use_cache: bool = True, log=print) -> dict:
    """Everything ``ganforge evaluate`` prints and writes to ``eval.json``."""
    from ganforge.metrics.extractors import get_extractor
    from ganforge.sampling import pick_device

    if _is_translation_run(Path(source)):  # image -> image: scored on its own held-out pairs
        from ganforge.translate import evaluate_run

        return evaluate_run(Path(source), device, limit=n)
    metrics = parse_metrics(metrics)
    ref = ref.strip()
    name = auto_extractor(ref) if extractor == "auto" else extractor
    dev = pick_device(device)
    ext = get_extractor(name, dev, inception_weights=inception_weights)
    t0 = time.perf_counter()
    gen_src = generated_source(source, n, seed=seed, device=str(dev))
    per_channel = "coverage" in metrics and ref == "stacked-mnist"
    keep = any(m in metrics for m in ("kid", "prc"))
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


def _is_translation_run(source: Path) -> bool:
    if not (source.is_dir() and (source / "config.yaml").is_file()):
        return False
    from ganforge.config import load_run_config
    from ganforge.models import get_family

    return get_family(load_run_config(source).model.family).translation


def _classifier_metrics(source: Path, device: str) -> dict[str, float]:
    """A semi-supervised run's accuracy on its data's held-out test split (its discriminator is a classifier)."""
    if not (source.is_dir() and (source / "config.yaml").is_file()):
        return {}
    from ganforge.config import load_run_config
    from ganforge.models import get_family

    if not get_family(load_run_config(source).model.family).classifier:
        return {}
    from ganforge.classify import held_out_accuracy

    accuracy, n = held_out_accuracy(source, device)
    return {"test_accuracy": accuracy, "n_test": float(n)}


def eval_json_path(source: str | Path) -> Path:
    p = Path(source)
    if p.is_dir():
        return p / "eval.json" if (p / "config.yaml").is_file() else p.parent / f"{p.name}.eval.json"
    return p.with_name(p.stem + ".eval.json")


def format_table(result: dict) -> str:
    rows = [(k, v) for k, v in result["metrics"].items()]
    width = max(len(k) for k, _ in rows) if rows else 10
    shape = f"{result['channels']}x{result['image_height']}x{result['image_width']}"
    head = (f"{result['source']} vs {result['ref']}  ({result['n_generated']:,} generated, "
            f"{result['n_reference']:,} reference, {shape}, {result['seconds']}s)")
    prep = [f"reference {result['ref']}: {result['reference_prep']}"] if result.get("reference_prep") else []
    lines = [head] + prep + [f"  {k:<{width}}  {v:.6g}" for k, v in rows] + _class_lines(result.get("class_shares"))
    return "\n".join(lines)
