"""``shards:DIR``: a prepared data set (``ganforge prepare``), WebDataset tar shards plus ``index.json``.

Why tar shards: a million small files make every epoch a million opens and directory lookups; a few large tars are
read sequentially and copied between machines as a handful of files. The shards are plain WebDataset tars
(``000000042.png`` + ``000000042.cls`` per sample), written with ``webdataset.ShardWriter`` with fixed mtimes,
owners and order, so preparing twice gives byte-identical files and any WebDataset reader can read them.

Why offsets in the index: training needs the order to be a pure function of (seed, epoch) and resume exact to the
sample. ``index.json`` stores, per shard, the byte offset and size of every sample's PNG, so ``ShardsDataset`` is
random-access: ``BatchSource`` permutes indices as for any set, each rank reads only its slice of every global
batch, and RAM holds only the offsets (16 bytes a sample), never the images. The offsets are stored as base64
of little-endian int64 arrays: a million samples load in milliseconds, where a JSON list of ints would cost
hundreds of MB of Python objects.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from ganforge.data.base import GanDataset
from ganforge.data.imageops import Size, as_hw, check_pixels, error_text, per_image_note, pil_to_tensor
from ganforge.errors import DataError

PREFIX = "shards:"
INDEX = "index.json"
PROGRESS = "progress.json"  # a prepare under way: completed shards, so a killed one resumes
REPORT = "report.txt"  # unreadable files and dropped duplicates
PATTERN = "shard-%06d.tar"
FORMAT = "ganforge-shards-1"
MTIME = 0.0  # fixed tar header fields: two prepares of one source give byte-identical shards
OWNER = "ganforge"


def pack(values: np.ndarray, dtype: str = "<i8") -> str:
    """A numeric array as base64 text: compact in JSON and fast to load (see the module docstring)."""
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode("ascii")


def unpack(text: str, dtype: str = "<i8") -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks so that multi-GB shards hash in flat memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def member_offsets(path: str | Path) -> tuple[list[int], list[int]]:
    """(data offset, size) of every ``.png`` member of a tar, in file order: what the index stores."""
    offsets, sizes = [], []
    with tarfile.open(path, "r:") as tar:
        for m in tar:
            if m.name.endswith(".png"):
                offsets.append(m.offset_data)
                sizes.append(m.size)
    return offsets, sizes


def shard_entry(path: Path, labels: list[int], parts: int = 1) -> dict:
    """The index entry of one finished shard: name, bytes, SHA-256, sample offsets/sizes and labels; a pair
    (``parts=2``) has two PNGs a sample, ``a.png`` then ``b.png``, their offsets interleaved."""
    offsets, sizes = member_offsets(path)
    if len(offsets) != len(labels) * parts:
        raise DataError(f"shard {path.name} holds {len(offsets)} images, {len(labels)} were written")
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path), "count": len(labels),
            "offsets": pack(np.array(offsets)), "sizes": pack(np.array(sizes)),
            "labels": pack(np.array(labels), "<i4")}


def is_prepared(folder: str | Path) -> bool:
    return (Path(folder) / INDEX).is_file()


def load_index(folder: str | Path) -> dict:
    """``DIR/index.json``, or one line saying the folder is not a prepared set."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"--data shards:{folder}: no such folder; make one with: ganforge prepare SRC --out {folder}")
    path = root / INDEX
    if not path.is_file():
        hint = " (a prepare was interrupted: run it again to finish)" if (root / PROGRESS).is_file() else ""
        raise DataError(f"--data shards:{folder} is not a prepared data set (no {INDEX}){hint}: make one with "
                        f"ganforge prepare SRC --out {folder}, or use --data folder:{folder} for a folder of images")
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not readable JSON ({exc}): run ganforge prepare again") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        found = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise DataError(f"{path} is not a ganforge prepared set (format {found!r}, expected {FORMAT!r}): run "
                        "ganforge prepare again")
    entries = index.get("shards")
    bad = "no list of shards" if not isinstance(entries, list) else next(
        (f"shard entry {i} is {str(e)[:40]}" for i, e in enumerate(entries) if not entry_ok(e)), "")
    if bad:
        raise DataError(f"{path} is damaged ({bad}): run ganforge prepare again")
    return index


ENTRY_KEYS = {"name": str, "bytes": int, "sha256": str, "count": int, "offsets": str, "sizes": str, "labels": str}


def entry_ok(entry: object) -> bool:
    return isinstance(entry, dict) and all(isinstance(entry.get(k), t) for k, t in ENTRY_KEYS.items()) \
        and Path(entry["name"]).name == entry["name"] and entry["count"] >= 0


def entry_arrays(entry: dict, parts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, sizes) as (count, parts) and labels of one index entry, refused unless every image lies inside
    its shard: a size read from the index is what ``read_bytes`` asks the file for (and allocates)."""
    try:
        offsets, sizes, labels = unpack(entry["offsets"]), unpack(entry["sizes"]), unpack(entry["labels"], "<i4")
    except ValueError as exc:  # bad base64, or a length that is no whole number of values
        raise DataError(f"{INDEX}: shard {entry['name']}'s offsets are unreadable ({exc}); run ganforge prepare "
                        "again") from None
    n = entry["count"]
    if len(offsets) != n * parts or len(sizes) != n * parts or len(labels) != n:
        raise DataError(f"{INDEX}: shard {entry['name']} lists {len(offsets)} offsets and {len(labels)} labels for "
                        f"{n} samples; run ganforge prepare again")
    if n and (offsets.min() < 0 or sizes.min() < 0 or (offsets + sizes).max() > entry["bytes"]):
        raise DataError(f"{INDEX}: shard {entry['name']} has images outside its {entry['bytes']:,} bytes; run "
                        "ganforge prepare again")
    return offsets.reshape(-1, parts), sizes.reshape(-1, parts), labels


def check_shard(root: Path, entry: dict) -> str:
    """'' when a shard is present with its recorded size and SHA-256, else what is wrong with it."""
    path = root / entry["name"]
    if not path.is_file():
        return "missing"
    if path.stat().st_size != entry["bytes"]:
        return f"{path.stat().st_size} bytes, the index says {entry['bytes']}"
    if sha256_file(path) != entry["sha256"]:
        return "SHA-256 differs from the index"
    return ""


class ShardsDataset(GanDataset):
    """A prepared set read item by item from its tars (seek + read + PNG decode): flat RAM at any size.

    ``strict``: a shard that fails its check, or an image that does not decode, is a DataError; otherwise the
    shard is reported (``skipped``, ``bad_shards``) and left out, and a bad image is replaced by the next good one
    (as folders do), so one flipped byte never kills a week-long run.
    """

    def __init__(self, folder: str | Path, channels: int, size: Size, *, strict: bool = False,
                 verify: bool = True, direction: str = "AtoB") -> None:
        root = Path(folder).expanduser()
        index = load_index(folder)
        names = index.get("class_names") or None
        h, w = as_hw(size)
        self.parts = 2 if index.get("pairs") else 1  # pairs: (A, B) stacked along the channels, as data/pairs.py
        kind = "pairs" if self.parts == 2 else "images"
        super().__init__(f"{PREFIX}{folder}", kind, (channels * self.parts, h, w), len(names) if names else None)
        self.swap = self.parts == 2 and direction == "BtoA"
        self.root, self.channels, self.size, self.strict = root, channels, (h, w), strict
        self.class_names = names
        self.index_sha256 = hashlib.sha256((root / INDEX).read_bytes()).hexdigest()  # the data fingerprint
        self.bad_shards = self._check(root, index["shards"]) if verify else []
        good = [e for e in index["shards"] if e["name"] not in dict(self.bad_shards)]
        self.lost = sum(e["count"] for e in index["shards"] if e["name"] in dict(self.bad_shards))
        arrays = [entry_arrays(e, self.parts) for e in good]
        self.shard_names = [e["name"] for e in good]
        self.shard_of = np.concatenate([np.full(e["count"], i, "<i4") for i, e in enumerate(good)] or [np.zeros(0)])
        self.offsets = np.concatenate([a[0] for a in arrays] or [np.zeros((0, self.parts), "<i8")])
        self.sizes = np.concatenate([a[1] for a in arrays] or [np.zeros((0, self.parts), "<i8")])
        labels = np.concatenate([a[2] for a in arrays] or [np.zeros(0, "<i4")])
        self.targets = torch.from_numpy(labels.astype(np.int64)) if names else None
        if len(self.offsets) == 0:
            raise DataError(f"--data shards:{folder}: no readable shard ({self.bad_shards[0][0]}: "
                            f"{self.bad_shards[0][1]}); run ganforge prepare again")
        res = index.get("resolution", [h, w])
        self.prep = "" if list(res) == [h, w] else per_image_note(size)
        self._files: dict[int, object] = {}
        self._pid = -1
        self._bad: set[int] = set()

    def _check(self, root: Path, entries: list[dict]) -> list[tuple[str, str]]:
        bad = []
        for e in entries:
            problem = check_shard(root, e)
            if problem and self.strict:
                raise DataError(f"corrupt shard {root / e['name']}: {problem}; prepare again, or drop --strict "
                                "to skip it")
            if problem:
                bad.append((e["name"], problem))
                self.skipped.append(f"{root / e['name']}\t{problem}: its {e['count']} images left out")
        return bad

    def skipped_images(self) -> int:
        """Images left out: those of the shards that failed their check, and those that did not decode."""
        return self.lost + len(self._bad)

    def skip_note(self) -> str:
        shards = f"{self.lost} in {len(self.bad_shards)} unreadable shards" if self.bad_shards else ""
        images = f"{len(self._bad)} that did not decode" if self._bad else ""
        return f"{self.skipped_images():,} images skipped ({', '.join(filter(None, (shards, images)))})"

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    def __getstate__(self) -> dict:  # DataLoader workers: open files stay with the process that opened them
        state = dict(self.__dict__)
        state["_files"], state["_pid"] = {}, -1
        return state

    def take(self, index: torch.Tensor, labels: Optional[torch.Tensor]) -> None:
        keep = index.numpy()
        self.shard_of, self.offsets, self.sizes = self.shard_of[keep], self.offsets[keep], self.sizes[keep]
        self.targets = labels.clone() if labels is not None else None

    def read_bytes(self, i: int, part: int = 0) -> bytes:
        """The PNG bytes of sample ``i`` (``part`` 1: a pair's B): one seek and one read in its shard (files kept
        open per process)."""
        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        shard = int(self.shard_of[i])
        f = self._files.get(shard)
        if f is None:
            f = self._files[shard] = open(self.root / self.shard_names[shard], "rb")
        f.seek(int(self.offsets[i, part]))
        return f.read(int(self.sizes[i, part]))

    def load(self, i: int) -> torch.Tensor:
        images = []
        for part in range(self.parts):
            with Image.open(io.BytesIO(self.read_bytes(i, part))) as img:
                check_pixels(img).load()
                images.append(pil_to_tensor(img, self.channels, self.size))
        return torch.cat(images[::-1] if self.swap else images, 0)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        for step in range(n):
            i = (index + step) % n
            if i in self._bad:
                continue
            try:
                label = int(self.targets[i]) if self.targets is not None else -1
                return self.load(i), label
            except Exception as exc:  # a damaged member decodes as OSError, SyntaxError, ValueError, ...
                where = f"{self.shard_names[int(self.shard_of[i])]} at byte {int(self.offsets[i, 0])}"
                if self.strict:
                    raise DataError(f"cannot decode the image in shard {where} ({error_text(exc, 120)}); prepare "
                                    "again, or drop --strict to skip it") from exc
                self._bad.add(i)
                self.skipped.append(f"{self.root / where.split(' at ')[0]}\tbyte {int(self.offsets[i, 0])}: "
                                    f"{error_text(exc, 120)}")
        raise DataError(f"no decodable image in {self.root}")
