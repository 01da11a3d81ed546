"""Turn ``data.spec`` into a dataset, and describe one in a line for the CLI."""
from __future__ import annotations

import os

import torch

from ganforge.config_base import DataConfig, ModelBase
from ganforge.data import embedded, folder, pairs, points, shards, stacked, tvsets
from ganforge.data.base import GanDataset
from ganforge.data.subset import Subset, apply, cut
from ganforge.data.imageops import Size
from ganforge.errors import DataError

FOLDER_PREFIX = "folder:"
NAMED_SPECS = (embedded.NAME, stacked.NAME, *tvsets.NAMES, *points.MIXTURES, *pairs.DIGIT_SPECS)
SPLIT_SPECS = (embedded.NAME, "mnist", "fashion-mnist", "cifar10", "svhn")  # the sets with a held-out test split
DIGIT_SETS = (embedded.NAME, "mnist", stacked.NAME)  # image sets of MNIST digits (the digit classifier reads them)


def holds_digits(spec: str) -> bool:
    """Whether ``spec`` names a set of MNIST digits (one per image, or one per channel)."""
    return spec.strip().lower() in DIGIT_SETS


def digits_per_channel(spec: str) -> bool:
    """Whether each channel of ``spec``'s images is its own digit (Stacked MNIST: a mode is the three labels)."""
    return spec.strip().lower() == stacked.NAME


def _unknown(spec: str) -> DataError:
    hint = ""
    if spec and os.path.isdir(os.path.expanduser(spec)):
        hint = f" (for a folder of images write --data folder:{spec})"
    return DataError(f"unknown dataset {spec!r}: choose one of {', '.join(NAMED_SPECS)}, folder:PATH, shards:PATH, "
                     f"paired:PATH or unpaired:PATH{hint}")


def build_dataset(data: DataConfig, model: ModelBase, *, seed: int = 0, strict: bool = False,
                  scan: bool | None = None) -> GanDataset:
    """The training set: ``data.spec`` shaped for ``model`` (channels, image_size), cut to ``data.limit`` images
    drawn with ``seed`` (the run's train.seed, so the subset is part of the run) and to ``data.classes``.

    Translation pairs keep their first ``data.limit`` pairs (their digit sets interleave the classes, so that is
    balanced too) and have no classes to pick. ``strict`` and ``scan``: see ``build_spec``.
    """
    spec = data.spec.strip()
    if pairs.is_translation_spec(spec):
        if data.classes:
            raise DataError(f"data.classes picks classes of an image set; {spec!r} is translation pairs: drop it")
        return build_spec(spec, data.root, data.download, model.channels, model.image_size, limit=data.limit,
                          strict=strict, scan=scan, split=data.split, direction=data.direction)
    subset = Subset(data.limit, tuple(data.classes) if data.classes else None, seed)
    return build_spec(spec, data.root, data.download, model.channels, model.image_size, subset=subset,
                      strict=strict, scan=scan, split=data.split, direction=data.direction)


def build_spec(spec: str, root: str = "data", download: bool = False, channels: int = 3, size: Size = 32, *,
               limit: int | None = None, strict: bool = False, scan: bool | None = None,
               split: str = "all", direction: str = "AtoB", subset: Subset | None = None) -> GanDataset:
    """The dataset ``spec`` names, images shaped (channels, *size) with ``size`` an int or (h, w).

    No model config involved, so evaluation can build a reference at whatever shape the samples have.
    ``limit``: the first N items (quick cuts for tools); ``subset`` instead: the seeded, class-balanced training
    subset of ``subset.py`` (for the generated sets, stacked-mnist and ring8/grid25, its limit is how many to
    generate). ``strict``: a folder image that cannot be decoded raises DataError instead of being skipped.
    ``scan``: for folders, decode every file now (``scan_folder``) and keep only readable ones, listing the
    others in ``skipped``; fails here, before any model is built, when none is readable. ``None`` (the
    default) scans folders of up to SCAN_MAX_FILES images and trusts larger ones to the per-item skipping.
    """
    spec = spec.strip()
    if pairs.is_translation_spec(spec):  # (A, B) pairs, 2 x channels stacked
        return pairs.build(spec, root, channels, size, limit, split, direction, scan)
    if split != "all" and spec.lower() not in SPLIT_SPECS:
        raise DataError(f"data.split={split!r}: {spec!r} has no train/test split (only {', '.join(SPLIT_SPECS)})")
    if subset is not None and subset.active:
        return _build_subset(spec, root, download, channels, size, subset, strict, scan, split, direction)
    if spec.startswith(FOLDER_PREFIX):
        return _build_folder(spec, channels, size, strict, scan, limit, None)
    if spec.startswith(shards.PREFIX):
        return _build_shards(spec, channels, size, strict, limit, None, direction)
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


def _build_subset(spec: str, root: str, download: bool, channels: int, size: Size, subset: Subset, strict: bool,
                  scan: bool | None, split: str, direction: str = "AtoB") -> GanDataset:
    """``build_spec`` with the training subset: drawn where the labels are first known, before decoding."""
    if spec.startswith(FOLDER_PREFIX):
        return _build_folder(spec, channels, size, strict, scan, None, subset)
    if spec.startswith(shards.PREFIX):
        return _build_shards(spec, channels, size, strict, None, subset, direction)
    name = spec.lower()
    if name in tvsets.NAMES:
        return tvsets.build(name, root, download, channels, size, None, test=split == "test", subset=subset)
    if name in (stacked.NAME, *points.MIXTURES):  # generated: data.limit is how many to make
        made = build_spec(spec, root, download, channels, size, limit=subset.limit, split=split)
        return cut(made, Subset(None, subset.classes, subset.seed))
    return cut(build_spec(spec, root, download, channels, size, strict=strict, scan=scan, split=split), subset)


def _build_folder(spec: str, channels: int, size: Size, strict: bool, scan: bool | None, limit: int | None,
                  subset: Subset | None) -> GanDataset:
    """A folder, labelled by its subfolders; the subset drawn from the readable files when it is scanned."""
    path = spec[len(FOLDER_PREFIX) :].strip()
    if not path:
        raise DataError(f"--data {spec!r} names no folder: write --data folder:DIR")
    good, bad, images = folder.list_images(path), [], None
    if scan or (scan is None and len(good) <= folder.SCAN_MAX_FILES):
        keep = folder.cache_fits(len(good), channels, size)  # decoded once, then trained from memory
        good, bad, images = folder.decode_folder(path, channels=channels, size=size, keep=keep)
        if bad and strict:
            raise DataError(f"unreadable image {bad[0]} ({len(bad)} in all): fix or remove it, or drop --strict "
                            "to skip such files")
    labels, names = folder.subfolder_labels(path, good)
    if images is not None:
        ds: GanDataset = folder.CachedFolderDataset(path, images, good, bad, size, labels, names)
    else:
        ds = folder.FolderDataset(path, channels, size, paths=good, skipped=bad, strict=strict, labels=labels,
                                  class_names=names)
    if subset is not None and subset.active:
        return apply(ds, subset.pick(labels, names, len(good), ds.name, ds.num_classes))
    if limit is not None and limit < len(good):
        ds.take(torch.arange(limit), labels[:limit] if labels is not None else None)
    return ds


def _build_shards(spec: str, channels: int, size: Size, strict: bool, limit: int | None,
                  subset: Subset | None, direction: str = "AtoB") -> GanDataset:
    """A prepared set (``ganforge prepare``), streamed from its shards; cut by offsets, nothing decoded here."""
    path = spec[len(shards.PREFIX):].strip()
    if not path:
        raise DataError(f"--data {spec!r} names no folder: write --data shards:DIR")
    ds = shards.ShardsDataset(path, channels, size, strict=strict, direction=direction)
    if subset is not None and subset.active:
        return apply(ds, subset.pick(ds.targets, ds.class_names, len(ds), ds.name, ds.num_classes))
    if limit is not None and limit < len(ds):
        ds.take(torch.arange(limit), ds.targets[:limit] if ds.targets is not None else None)
    return ds


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
        if ds.subset_of is not None:
            of = f"{n:,} of {ds.subset_of:,} images" if ds.subset_of != n else f"{n:,} images"
            what = f"{of}, {ds.subset_detail}, {c}x{h}x{w}" if ds.subset_detail else f"{of} {c}x{h}x{w}"
    unit = "modes" if ds.kind == "points" else "classes"
    classes = f"{ds.num_classes} {unit}" if ds.num_classes else "no labels"
    where = "in memory" if ds.tensor is not None else "read from disk"
    skipped = f", {ds.skip_note()}" if ds.skipped else ""
    return f"{ds.name}: {what}, {classes}, {where}{skipped}"
