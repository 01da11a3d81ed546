"""The reference a run is scored against: a data spec's images through an extractor, cached on disk.

The reference is built at the generated images' own (H, W) and channels, without any model config; what that
took (``"padded 28x28 -> 32x32"``) is reported as ``reference_prep``. Statistics are cached, keyed by dataset,
H x W, channels, extractor and N (a folder's never: its content may change under the same name).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

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
