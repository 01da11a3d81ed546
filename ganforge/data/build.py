"""Turn ``data.spec`` into a dataset, and describe one in a line for the CLI."""
from __future__ import annotations

import os

from ganforge.config_base import DataConfig, ModelBase
from ganforge.data import embedded, folder, pairs, points, stacked, tvsets
from ganforge.data.base import GanDataset
from ganforge.data.imageops import Size
from ganforge.errors import DataError

FOLDER_PREFIX = "folder:"
NAMED_SPECS = (embedded.NAME, stacked.NAME, *tvsets.NAMES, *points.MIXTURES, *pairs.DIGIT_SPECS)
SPLIT_SPECS = (embedded.NAME, "mnist", "fashion-mnist", "cifar10", "svhn")  # the sets with a held-out test split


def _unknown(spec: str) -> DataError:
    hint = ""
    if spec and os.path.isdir(os.path.expanduser(spec)):
        hint = f" (for a folder of images write --data folder:{spec})"
    return DataError(f"unknown dataset {spec!r}: choose one of {', '.join(NAMED_SPECS)}, folder:PATH, paired:PATH or "
                     f"unpaired:PATH{hint}")


def build_dataset(data: DataConfig, model: ModelBase, *, strict: bool = False, scan: bool | None = None) -> GanDataset:
    """The dataset ``data.spec`` names, shaped for ``model`` (channels, image_size) and cut to ``data.limit``.

    ``strict`` and ``scan``: see ``build_spec``.
    """
    return build_spec(data.spec, data.root, data.download, model.channels, model.image_size, limit=data.limit,
                      strict=strict, scan=scan, split=data.split, direction=data.direction)


def build_spec(spec: str, root: str = "data", download: bool = False, channels: int = 3, size: Size = 32, *,
               limit: int | None = None, strict: bool = False, scan: bool | None = None,
               split: str = "all", direction: str = "AtoB") -> GanDataset:
    """The dataset ``spec`` names, images shaped (channels, *size) with ``size`` an int or (h, w).

    No model config involved, so evaluation can build a reference at whatever shape the samples have.
    ``strict``: a folder image that cannot be decoded raises DataError instead of being skipped.
    ``scan``: for folders, decode every file now (``scan_folder``) and keep only readable ones, listing the
    others in ``skipped``; fails here, before any model is built, when none is readable. ``None`` (the
    default) scans folders of up to SCAN_MAX_FILES images and trusts larger ones to the per-item skipping.
    """
    spec = spec.strip()
    if pairs.is_translation_spec(spec):  # (A, B) pairs, 2 x channels stacked
        return pairs.build(spec, root, channels, size, limit, split, direction, scan)
    if split != "all" and spec.lower() not in SPLIT_SPECS:
        raise DataError(f"data.split={split!r}: {spec!r} has no train/test split (only {', '.join(SPLIT_SPECS)})")
    if spec.startswith(FOLDER_PREFIX):
        path = spec[len(FOLDER_PREFIX) :].strip()
        if not path:
            raise DataError(f"--data {spec!r} names no folder: write --data folder:DIR")
        good, bad = folder.list_images(path), []
        if scan or (scan is None and len(good) <= folder.SCAN_MAX_FILES):
            keep = folder.cache_fits(len(good), channels, size)  # decoded once, then trained from memory
            good, bad, images = folder.decode_folder(path, channels=channels, size=size, keep=keep)
            if bad and strict:
                raise DataError(f"unreadable image {bad[0]} ({len(bad)} in all): fix or remove it, or drop --strict "
                                "to skip such files")
            if keep:
                return folder.CachedFolderDataset(path, images[:limit], good[:limit], bad, size)
        return folder.FolderDataset(path, channels, size, paths=good[:limit], skipped=bad, strict=strict)
    name = spec.lower()
    if name == embedded.NAME:
        return embedded.build(channels, size, limit, split=split)
    if name == stacked.NAME:
        return stacked.build(channels, size, limit)
    if name in tvsets.NAMES:
        return tvsets.build(name, root, download, channels, size, limit, test=split == "test")
    if name in points.MIXTURES:
        return points.build(name, limit)
    raise _unknown(spec)


def describe(ds: GanDataset) -> str:
    """One line for the CLI, e.g. ``mnist-embedded: 5,000 images 1x32x32, 10 classes, in memory``."""
    n = len(ds)
    if ds.kind == "points":
        what = f"{n:,} points in {ds.sample_shape[0]}-D"
    elif ds.kind == "pairs":
        c, h, w = ds.sample_shape
        what = f"{n:,} pairs {c // 2}x{h}x{w} -> {c // 2}x{h}x{w}"
    else:
        c, h, w = ds.sample_shape
        what = f"{n:,} images {c}x{h}x{w}"
    unit = "modes" if ds.kind == "points" else "classes"
    classes = f"{ds.num_classes} {unit}" if ds.num_classes else "no labels"
    where = "in memory" if ds.tensor is not None else "read from disk"
    skipped = f", {len(ds.skipped):,} unreadable files skipped" if ds.skipped else ""
    return f"{ds.name}: {what}, {classes}, {where}{skipped}"
