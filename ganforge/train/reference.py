"""The reference a run is scored against: a data spec's images through an extractor, cached on disk.

The reference is built at the generated images' own (H, W) and channels, without any model config; what that
took (``"padded 28x28 -> 32x32"``) is reported as ``reference_prep``. Statistics are cached, keyed by dataset,
H x W, channels, extractor and N (a folder's never: its content may change under the same name).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from ganforge.errors import UserError
from ganforge.metrics.pipeline import Collected, ImageSource, collect, shape_text


def cache_dir() -> Path:
    return Path(os.environ.get("GANFORGE_CACHE", Path.home() / ".cache" / "ganforge")) / "refstats"

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

def fit_images(ref: str, hw: tuple[int, int], channels: int, data_root: str = "data", download: bool = False):
    """The reference images an extractor that learns from them (``ssl-conv``) is fitted on: up to 5,000, at the
    generated images' shape."""
    from ganforge.metrics.extractors.ssl_conv import SslSettings
    from ganforge.metrics.pipeline import gather

    limit = SslSettings().max_images
    return gather(reference_source(ref, hw, channels, limit, data_root, download), limit)

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

    key = _cache_key(ref, as_hw(size), channels, getattr(extractor, "cache_tag", extractor.name), n)  # ssl-conv: its encoder's
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


# ------------------------------------------------------------------------------------ extractor, protocol, training

# What a run's own evaluation (eval.final, periodic) uses when its extractor cannot open offline (a weights file
# absent, no network): an extractor that needs no download, so that every run still ends with a number. One
# constant, to point at the offline default for any images once the extractors package has one.
OFFLINE_FALLBACK = "ssl-conv"
COPY_REF_MAX = 10_000  # training images the copy check compares with (an even, fixed choice of larger sets)


def open_extractor(name: str, ref: str, device, weights=None, fallback: Optional[str] = None, log=print,
                   shape: Optional[tuple[tuple[int, int], int]] = None, data_root: str = "data",
                   download: bool = False) -> tuple[object, str]:
    """(extractor, its name) for ``name`` (``auto`` resolved for ``ref``); with ``fallback``, an extractor that
    cannot open (weights absent offline) is replaced by that one, with a warning, instead of failing.
    ``shape`` ((h, w), channels): the generated images', at which an extractor that learns from the reference
    (ssl-conv) is fitted on it."""
    from ganforge.metrics.extractors import get_extractor, resolve

    def reference():
        if shape is None:
            raise UserError(f"extractor {chosen} learns from the reference images: give their shape")
        return fit_images(ref, shape[0], shape[1], data_root, download)

    chosen = resolve(name, ref)
    try:
        return get_extractor(chosen, device, weights=weights, reference=reference), chosen
    except UserError as exc:
        if not fallback or fallback == chosen:
            raise
        log(f"warning: extractor {chosen} unavailable ({' '.join(str(exc).split())[:160]}); scoring with "
            f"{fallback}, which needs no download")
        return get_extractor(fallback, device, reference=reference), fallback


_HASHES: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    import hashlib

    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


# until every extractor states them itself (attributes weights_sha256 / weights_path / seed, resize_filter)
_CONV_RESIZE = "grey repeated to RGB; antialiased bilinear to 32x32 (64x64 for images over 48 px)"
_RESIZE = {"mnist-cnn": "grey (luma); 28 and 32 px as is, else antialiased bilinear to 28x28; padded to 32x32",
           "inception-v3": "grey repeated to RGB; torch-fidelity's TF-compatible bilinear to 299x299",
           "dinov2-vit-b-14": "grey repeated to RGB; bicubic to 224x224; ImageNet mean/std",
           "random-conv": _CONV_RESIZE, "random-conv-x4": _CONV_RESIZE, "ssl-conv": _CONV_RESIZE}
_SEEDS = {"random-conv": "seed:0", "random-conv-x4": "seed:0-3"}  # weights drawn from these seeds, no file


def weights_id(extractor) -> str:
    """``sha256:HEX`` of the extractor's weights file, ``seed:N`` for a seeded random one, else ``none``."""
    sha = getattr(extractor, "weights_sha256", None)
    if sha:
        return sha if str(sha).startswith("sha256:") else f"sha256:{sha}"
    path = getattr(extractor, "weights_path", None)
    if path is None and getattr(extractor, "name", "") == "mnist-cnn":  # the shipped file
        from ganforge.metrics.extractors import _shipped_weights

        path = _shipped_weights()
    if path is not None and Path(str(path)).is_file():
        return "sha256:" + file_sha256(Path(str(path)))
    seed = getattr(extractor, "seed", None)
    return f"seed:{seed}" if seed is not None else _SEEDS.get(getattr(extractor, "name", ""), "none")


def protocol(extractor, n_generated: int, n_reference: int, ref: str, split: str, **more) -> dict:
    """How a number was made, for eval.json: extractor, its weights, its resize, counts and the reference split."""
    name = getattr(extractor, "name", str(extractor))
    resize = getattr(extractor, "resize_filter", None) or _RESIZE.get(name, "unstated by the extractor")
    return {"extractor": name, "weights": weights_id(extractor), "resize_filter": resize,
            "n_generated": n_generated, "n_reference": n_reference, "reference": ref, "reference_split": split, **more}


def training_source(data, model, seed: int, limit: int = COPY_REF_MAX) -> tuple[ImageSource, int]:
    """A run's training images exactly as it trained on them (``build_dataset``: its limit, classes and split),
    up to ``limit`` of them (evenly spaced when there are more), and how many there are in all."""
    from ganforge.data import build_dataset

    ds = build_dataset(data, model, seed=seed)
    if ds.kind != "images":
        raise UserError(f"the training data {data.spec!r} are not images: no copy check")
    idx = np.linspace(0, len(ds) - 1, limit).round().astype(int) if len(ds) > limit else np.arange(len(ds))

    def batches(bs: int) -> Iterator[torch.Tensor]:
        for i in range(0, len(idx), bs):
            part = idx[i:i + bs]
            if ds.tensor is not None:
                yield ds.tensor[torch.as_tensor(part)]
            else:
                yield torch.stack([ds[int(j)][0] for j in part])

    c, h, w = ds.sample_shape
    src = ImageSource(f"training data {data.spec}", c, h, w, len(idx), batches, prep=f"{len(idx)} of {len(ds)} images")
    return src, len(ds)
