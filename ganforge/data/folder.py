"""``folder:PATH``: every image under a folder, decoded lazily from disk.

Building only lists files (fast for big folders); an unreadable file is skipped when first met, so one bad JPEG
never kills an epoch. ``scan_folder`` decodes everything up front for when failing early is worth the time.
Labels come from the immediate subfolders (``DIR/cat/*.png``, ``DIR/dog/*.png``: 0 and 1 in sorted name order,
``class_names`` kept) when every image is in one of at least two of them; otherwise the set is unlabelled.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import torch
from PIL import Image

from ganforge.data.base import GanDataset, TensorGanDataset
from ganforge.data.imageops import MAX_IMAGE_PIXELS, Size, as_hw, per_image_note, pil_to_tensor, upright
from ganforge.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SCAN_MAX_FILES = 20_000  # the trainer scans folders up to this size before building a model
CACHE_MAX_BYTES = 1 << 30  # ... and keeps them decoded in memory (float32) when they take no more than this
GREY_MODES = ("1", "L", "LA", "La", "F")  # plus every "I..." mode (32-bit and 16-bit grey)


def _folder_or_raise(path: str | Path) -> Path:
    root = Path(path).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataError(f"folder '{path}' {what}: pass --data folder:DIR with a folder of images")
    return root


def list_images(path: str | Path) -> list[str]:
    """Image files under ``path``, recursively, sorted so the order (and --limit) is the same on every machine.

    Hidden files and folders are ignored: they are typically macOS '._x.jpg' resource forks, not images.
    """
    root = _folder_or_raise(path)
    found: list[str] = []
    seen = {_identity(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in sorted(dirnames) if not d.startswith(".") and _first_visit(dirpath, d, seen)]
        found.extend(
            os.path.join(dirpath, f)
            for f in filenames
            if not f.startswith(".") and f.lower().endswith(EXTENSIONS)
        )
    if not found:
        raise DataError(
            f"folder '{path}' has no image files: put images ({' '.join(EXTENSIONS)}) in it or in its subfolders"
        )
    return sorted(found, key=lambda p: os.path.relpath(p, root))


def _identity(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _first_visit(parent: str, name: str, seen: set) -> bool:
    """Follow each folder once, however many links lead to it: ``ln -s . loop`` would make the walk endless, a
    link to a sibling would list its images twice."""
    try:
        key = _identity(os.path.join(parent, name))
    except OSError:  # a dangling link
        return False
    if key in seen:
        return False
    seen.add(key)
    return True


def subfolder_labels(root: str | Path, paths: list[str]) -> tuple[Optional[torch.Tensor], Optional[list[str]]]:
    """(label per path, class names) from each path's immediate subfolder of ``root``, names sorted; (None, None)
    when an image lies directly in ``root`` or there are fewer than two subfolders (one class is no labelling)."""
    firsts = [Path(os.path.relpath(p, Path(root).expanduser())).parts for p in paths]
    if not firsts or any(len(parts) < 2 for parts in firsts):
        return None, None
    names = sorted({parts[0] for parts in firsts})
    if len(names) < 2:
        return None, None
    ids = {name: i for i, name in enumerate(names)}
    return torch.tensor([ids[parts[0]] for parts in firsts], dtype=torch.long), names


def load_image(path: str, channels: int, size: Size) -> torch.Tensor:
    """Decode one file to (channels, h, w) in [-1, 1] (``size`` an int or (h, w)); raises on anything unreadable."""
    th, tw = as_hw(size)
    with Image.open(path) as img:
        w, h = img.size
        if w * h > MAX_IMAGE_PIXELS:  # PIL only warns below 2x the bound; treat it as bad either way
            raise Image.DecompressionBombError(f"{w}x{h} pixels exceeds the limit of {MAX_IMAGE_PIXELS}")
        if img.format == "JPEG":
            img.draft(None, (tw, th))  # DCT-domain downscale: decodes big photos several times faster
        img.load()
        return pil_to_tensor(img, channels, (th, tw))


def image_shape(path: str) -> tuple[int, int, int]:
    """(height, width, channels) one file decodes to (after EXIF orientation): grey modes -> 1 channel, else 3."""
    check_image(path)
    with Image.open(path) as img:
        mode = img.mode
        w, h = upright(img).size
    return h, w, 1 if mode in GREY_MODES or mode.startswith("I") else 3


def folder_shape(path: str | Path) -> tuple[int, int, int]:
    """(height, width, channels) of the first readable image under ``path``: the shape a folder of generated
    images is evaluated at. Raises DataError when the folder has no images or none is readable."""
    paths, errors = list_images(path), []
    for p in paths:
        try:
            return image_shape(p)
        except Exception as exc:  # any decode failure means "bad file", as in scan_folder
            errors.append(_reason(exc))
    raise _no_readable(path, paths, errors[0])


def check_image(path: str, channels: int = 3, size: Size = 16) -> torch.Tensor:
    """Raise if ``path`` is not fully readable: PIL's structural ``verify`` plus a real decode, which is returned."""
    with Image.open(path) as img:
        img.verify()
    return load_image(path, channels, size)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _no_readable(path: str | Path, bad: list[str], example_error: str) -> DataError:
    return DataError(
        f"no readable images in {path} ({len(bad)} files could not be read, e.g. {bad[0]}: {example_error})"
    )


def scan_folder(path: str | Path, workers: int | None = None) -> tuple[list[str], list[str]]:
    """Decode every image under ``path``; return (readable paths, unreadable paths), both sorted.

    Raises DataError when nothing is readable, so an all-bad folder fails before a model is built.
    """
    good, bad, _ = decode_folder(path, workers)
    return good, bad


def decode_folder(path: str | Path, workers: int | None = None, *, channels: int = 3, size: Size = 16,
                  keep: bool = False) -> tuple[list[str], list[str], torch.Tensor | None]:
    """``scan_folder``, and with ``keep`` the readable images decoded into one (N, channels, h, w) tensor in
    [-1, 1], so a folder that fits in memory is decoded once for checking and training alike (else None).
    Runs on threads: PIL releases the GIL while decoding.
    """
    paths = list_images(path)
    out = torch.empty((len(paths), channels, *as_hw(size))) if keep else None

    def decode(i: int) -> str:
        try:
            image = check_image(paths[i], channels, size if out is not None else 16)  # small when not kept
            if out is not None:
                out[i] = image
            return ""
        except Exception as exc:  # any decode failure means "bad file", whatever PIL's exception type
            return _reason(exc)

    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        errors = list(pool.map(decode, range(len(paths))))
    ok = [i for i, e in enumerate(errors) if not e]
    if not ok:
        raise _no_readable(path, paths, next(e for e in errors if e))
    if out is not None and len(ok) < len(paths):
        out = out[torch.tensor(ok)]
    return [paths[i] for i in ok], [p for p, e in zip(paths, errors) if e], out


class FolderDataset(GanDataset):
    """Images under a folder, decoded on access; labelled by subfolder (``targets``) or unlabelled (label -1)."""

    def __init__(
        self,
        path: str | Path,
        channels: int,
        size: Size,
        *,
        paths: list[str] | None = None,
        skipped: list[str] | None = None,
        strict: bool = False,
        labels: Optional[torch.Tensor] = None,
        class_names: Optional[list[str]] = None,
    ) -> None:
        h, w = as_hw(size)
        super().__init__(f"folder:{path}", "images", (channels, h, w), len(class_names) if class_names else None)
        self.root = str(path)
        self.paths = list(paths) if paths is not None else list_images(path)
        self.targets = labels.tolist() if labels is not None else None  # not ``labels``: that means in memory
        self.class_names = class_names
        self.channels, self.size, self.strict = channels, (h, w), strict
        self.prep = per_image_note(size)
        self.skipped = list(skipped or [])
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, index: torch.Tensor, labels: Optional[torch.Tensor]) -> None:
        self.paths = [self.paths[i] for i in index.tolist()]
        self.targets = labels.tolist() if labels is not None else None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        n = len(self.paths)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        index %= n
        first_error = ""
        for step in range(n):
            i = (index + step) % n
            if i in self._bad:
                continue
            try:
                label = self.targets[i] if self.targets is not None else -1
                return load_image(self.paths[i], self.channels, self.size), label
            except Exception as exc:  # decode failures come as OSError, SyntaxError, ValueError, ...
                if self.strict:
                    raise DataError(
                        f"cannot read image '{self.paths[i]}' ({_reason(exc)}): delete or fix it, "
                        "or run without strict checking to skip it"
                    ) from exc
                self._bad.add(i)
                self.skipped.append(self.paths[i])
                first_error = first_error or _reason(exc)
        raise _no_readable(self.root, self.skipped, first_error or "see earlier skips")


class CachedFolderDataset(TensorGanDataset):
    """A folder decoded once into memory (by the scan): batches are slices, no decoding or workers per epoch.

    Keeps ``paths`` so that a run's data fingerprint is the folder's (names and sizes), as for ``FolderDataset``.
    """

    def __init__(self, path: str | Path, images: torch.Tensor, paths: list[str], skipped: list[str],
                 size: Size, labels: Optional[torch.Tensor] = None, class_names: Optional[list[str]] = None) -> None:
        if labels is None:
            labels = torch.full((len(images),), -1, dtype=torch.long)
        super().__init__(f"folder:{path}", "images", images, labels, len(class_names) if class_names else None)
        self.root, self.paths, self.skipped = str(path), list(paths), list(skipped)
        self.prep = per_image_note(size)
        self.class_names = class_names


def cache_fits(n_images: int, channels: int, size: Size) -> bool:
    """Whether ``n_images`` decoded images of this shape fit the in-memory cache."""
    h, w = as_hw(size)
    return n_images * channels * h * w * 4 <= CACHE_MAX_BYTES
