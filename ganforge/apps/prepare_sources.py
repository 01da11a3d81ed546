"""What ``ganforge prepare`` reads: a folder, zip, .npz or named set listed as items (nothing decoded yet), with
their labels, and the options that shape the output.

Everything here reads a size that comes from outside with a bound: zip members by their declared size and then a
bounded stream (``read_member``), .npz arrays by their headers (``io_utils.read_npz``), folders walked with each
folder followed once (``data.folder.list_images``). Array values are taken at their scale or refused, never clipped.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ganforge.data import folder as folder_data
from ganforge.data.imageops import printable
from ganforge.errors import UserError
from ganforge.io_utils import read_npz
MAX_FILE_BYTES = 256 * 2 ** 20  # a zip member read into memory at most (by its declared size, then by a bounded
# read): an image of MAX_IMAGE_PIXELS RGBA pixels stored raw is 358 MB, a real file of that many pixels far less

@dataclass(frozen=True)
class Options:
    """Everything that shapes the output: recorded in the index, and a resume must use the same."""

    source: str
    resolution: int = 256
    channels: int = 3
    resize: str = "center-crop"
    resampler: str = "lanczos"
    background: str = "white"
    shard_size: int = 10_000
    pairs: bool = False  # SRC/A and SRC/B with matching names -> (A, B) pairs for image-to-image families


@dataclass
class Source:
    """The items to convert, in a fixed order, and their labels (-1 without classes)."""

    items: list  # ("file", path) | ("zip", zip path, member) | ("array", uint8 HWC or HW array) | ("pair", a, b)
    labels: list[int]
    class_names: Optional[list[str]]
    names: list[str]  # what the report calls each item

    def __post_init__(self) -> None:
        self.names = [printable(n) for n in self.names]  # one report line each, whatever the file system allows
        if len(self.labels) != len(self.items):
            raise UserError(f"{len(self.items)} images but {len(self.labels)} labels: give one label per image")

    def fingerprint(self) -> dict:
        """What the source listed: a finished or interrupted set is refused for a source that changed since."""
        digest = hashlib.sha256("\n".join(self.names).encode("utf-8", "backslashreplace")).hexdigest()
        return {"count": len(self.items), "sha256": digest}

def _labels_from_parts(parts: list[tuple[str, ...]]) -> tuple[list[int], Optional[list[str]]]:
    """Labels from the first path component, as folders are labelled (at least two classes, none loose)."""
    if not parts or any(len(p) < 2 for p in parts) or len({p[0] for p in parts}) < 2:
        return [-1] * len(parts), None
    names = sorted({p[0] for p in parts})
    ids = {n: i for i, n in enumerate(names)}
    return [ids[p[0]] for p in parts], names


def _folder_source(path: Path) -> Source:
    files = folder_data.list_images(path)
    labels, names = folder_data.subfolder_labels(path, files)
    rel = [os.path.relpath(f, path) for f in files]
    return Source([("file", f) for f in files], labels.tolist() if labels is not None else [-1] * len(files),
                  names, rel)


def _zip_source(path: Path) -> Source:
    try:
        with zipfile.ZipFile(path) as z:
            members = sorted(n for n in z.namelist() if n.lower().endswith(folder_data.EXTENSIONS)
                             and not any(part.startswith((".", "__MACOSX")) for part in n.split("/")))
    except zipfile.BadZipFile as exc:
        raise UserError(f"{path} is not a readable zip ({exc})") from None
    if not members:
        raise UserError(f"{path} holds no image files ({' '.join(folder_data.EXTENSIONS)})")
    labels, names = _labels_from_parts([tuple(m.split("/")) for m in members])
    return Source([("zip", str(path), m) for m in members], labels, names, members)


def _as_uint8(x: np.ndarray, what: str) -> np.ndarray:
    """Integers in 0..255 as they are; floats in [0, 1], [-1, 1] or [0, 255] scaled to 0..255. Anything else is
    refused, never clipped: a wrong scale would train on saturated images without a word."""
    if x.dtype == np.uint8:
        return x
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == np.bool_):
        raise UserError(f"{what}: images of dtype {x.dtype} are not pixels: use uint8 (0..255) or float (0..1)")
    if x.size == 0:
        return x.astype(np.uint8)
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise UserError(f"{what}: the images hold values that are not finite (NaN or infinity): fix the array")
    lo, hi = float(x.min()), float(x.max())
    if not np.issubdtype(x.dtype, np.floating):
        if lo < 0 or hi > 255:
            raise UserError(f"{what}: integer pixel values from {lo:g} to {hi:g}: use 0..255 (e.g. uint8)")
        return x.astype(np.uint8)
    scales = [(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)]
    low, top = next(((a, b) for a, b in scales if a <= lo and hi <= b), (None, None))
    if low is None:
        raise UserError(f"{what}: float pixel values from {lo:g} to {hi:g}: use 0..1, -1..1 or 0..255")
    return np.rint((x.astype(np.float64) - low) / (top - low) * 255.0).astype(np.uint8)


def _labels_of(labels: Optional[np.ndarray], n: int, what: str) -> list[int]:
    if labels is None:
        return [-1] * n
    y = np.asarray(labels).reshape(-1)
    if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all()
                                                   and (y == np.round(y)).all())):
        raise UserError(f"{what}: labels of dtype {y.dtype} (e.g. {y[:1].tolist()}): use whole numbers, one per "
                        "image")
    if len(y) != n:
        raise UserError(f"{what}: {n} images but {len(y)} labels: give one label per image")
    return [int(v) for v in y]


def _array_source(images: np.ndarray, labels: Optional[np.ndarray], what: str) -> Source:
    """uint8 (N, H, W), (N, H, W, C) or (N, C, H, W) images -> items; float arrays in [-1, 1], [0, 1] or [0, 255]."""
    x = _as_uint8(np.asarray(images), what)
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (3, 4) or len(x) == 0:
        raise UserError(f"{what}: expected N images (N,H,W) or (N,H,W,C), got shape {tuple(images.shape)}")
    y = _labels_of(labels, len(x), what)
    names = [str(i) for i in sorted(set(y))] if labels is not None and len(set(y)) > 1 else None
    if names:
        ids = {v: i for i, v in enumerate(sorted(set(y)))}
        y = [ids[v] for v in y]
    return Source([("array", x[i]) for i in range(len(x))], y, names, [f"{what}[{i}]" for i in range(len(x))])


def _npz_source(path: Path) -> Source:
    arrays = read_npz(path, "--source .npz")
    key = next((k for k in ("images", "x", "arr_0") if k in arrays), None)
    if key is None:
        raise UserError(f"{path} has no 'images' (or 'x', 'arr_0') array; it has: {', '.join(sorted(arrays))}")
    labels = next((arrays[k] for k in ("labels", "y") if k in arrays), None)
    return _array_source(arrays[key], labels, path.name)


def _named_source(name: str, root: str, download: bool, opt: Options) -> Source:
    from ganforge.data.build import build_spec  # a named set, decoded by its own builder

    ds = build_spec(name, root, download, opt.channels, opt.resolution)
    if ds.tensor is None or ds.kind != "images":
        raise UserError(f"{name} is not an image set held in memory; prepare a folder, zip or .npz instead")
    x = ((ds.tensor.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    labels = ds.labels.numpy() if ds.num_classes else None
    return _array_source(x, labels, name)


def _pairs_source(path: Path) -> Source:
    """``A/`` and ``B/`` folders holding the same file names (the pix2pix layout): one pair per common name."""
    if not (path / "A").is_dir() or not (path / "B").is_dir():
        raise UserError(f"--pairs: {path} needs A/ and B/ folders with matching file names")
    a = {os.path.relpath(f, path / "A"): f for f in folder_data.list_images(path / "A")}
    b = {os.path.relpath(f, path / "B"): f for f in folder_data.list_images(path / "B")}
    common = sorted(set(a) & set(b))
    if not common:
        raise UserError(f"--pairs: no file name is in both {path / 'A'} and {path / 'B'}")
    return Source([("pair", ("file", a[n]), ("file", b[n])) for n in common], [-1] * len(common), None, common)


def find_source(src: str, root: str = "data", download: bool = False, opt: Optional[Options] = None) -> Source:
    """What SRC names, listed (nothing decoded yet): one line when it does not exist or holds no images."""
    path = Path(src).expanduser()
    if opt is not None and opt.pairs:
        if not path.is_dir():
            raise UserError(f"--pairs: source {src!r} is not a folder (it needs A/ and B/ subfolders)")
        return _pairs_source(path)
    if path.is_dir():
        return _folder_source(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        return _zip_source(path)
    if path.is_file() and path.suffix.lower() == ".npz":
        return _npz_source(path)
    if path.exists():
        raise UserError(f"{src}: prepare reads a folder, a .zip or an .npz, not a {path.suffix or 'plain'} file")
    from ganforge.data.build import NAMED_SPECS

    if src.lower() in NAMED_SPECS:
        return _named_source(src.lower(), root, download, opt or Options(src))
    raise UserError(f"source {src!r} does not exist: pass a folder, a .zip, an .npz or one of "
                    f"{', '.join(NAMED_SPECS)}")

def read_member(path: str, member: str, limit: Optional[int] = None) -> bytes:
    """One zip member's bytes, refused by its declared size before reading, then read through a bounded stream
    (``zipfile`` stops at the declared size, and so at ``limit``)."""
    limit = MAX_FILE_BYTES if limit is None else limit
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
        if info.file_size > limit:
            raise ValueError(f"{info.file_size:,} bytes uncompressed (its zip entry says): over the {limit:,} a file "
                             "may have")
        with z.open(info) as f:
            data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"more than {limit:,} bytes uncompressed: over the limit")
    return data
