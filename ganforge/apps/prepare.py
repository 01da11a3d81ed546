"""``ganforge prepare SRC --out DIR``: a folder, zip, .npz or named set -> tar shards + index.json (data/shards.py).

The work is decode -> convert -> resize -> PNG, one image at a time in a process pool (``--workers``), results
taken in source order so the output does not depend on the pool. After each shard the writer records it in
``progress.json`` (its SHA-256, offsets, the source position and the pixel hashes kept so far): a killed prepare
keeps the shards that verify and redoes only the partial one. ``index.json`` is written last, so a set without it
is never trained on.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
import torch
from PIL import Image

from ganforge.data import folder as folder_data
from ganforge.data import shards
from ganforge.data.imageops import MAX_IMAGE_PIXELS, RESAMPLERS, RESIZE_POLICIES, parse_colour, resize_policy, \
    to_channels, upright
from ganforge.errors import UserError
from ganforge.io_utils import atomic_write_text, read_npz


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


def _check_options(opt: Options) -> None:
    if opt.resize not in RESIZE_POLICIES:
        raise UserError(f"--resize {opt.resize!r}: choose one of {', '.join(RESIZE_POLICIES)}")
    if opt.resampler not in RESAMPLERS:
        raise UserError(f"--resampler {opt.resampler!r}: choose one of {', '.join(RESAMPLERS)}")
    if opt.channels not in (1, 3):
        raise UserError(f"--channels {opt.channels}: 1 (grey) or 3 (RGB)")
    if not 4 <= opt.resolution <= 4096:
        raise UserError(f"--resolution {opt.resolution}: between 4 and 4096 pixels")
    if opt.shard_size < 1:
        raise UserError(f"--shard-size {opt.shard_size}: at least 1 image per shard")
    try:
        parse_colour(opt.background)
    except ValueError as exc:
        raise UserError(f"--background: {exc}") from None


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


def _array_source(images: np.ndarray, labels: Optional[np.ndarray], what: str) -> Source:
    """uint8 (N, H, W), (N, H, W, C) or (N, C, H, W) images -> items; float arrays in [-1, 1] or [0, 1] too."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        lo = -1.0 if x.min() < 0 else 0.0
        x = np.clip(np.rint((x.astype(np.float64) - lo) / (1.0 - lo) * 255.0), 0, 255).astype(np.uint8)
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (3, 4) or len(x) == 0:
        raise UserError(f"{what}: expected N images (N,H,W) or (N,H,W,C), got shape {tuple(images.shape)}")
    y = [-1] * len(x) if labels is None else [int(v) for v in np.asarray(labels).reshape(-1)]
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


def _open_item(item: tuple) -> Image.Image:
    if item[0] == "file":
        return Image.open(item[1])
    if item[0] == "zip":
        with zipfile.ZipFile(item[1]) as z:
            return Image.open(io.BytesIO(z.read(item[2])))
    return Image.fromarray(item[1])


def convert(job: tuple[tuple, Options]) -> tuple[bytes | tuple[bytes, bytes], str, str]:
    """One item -> (PNG bytes, pixel hash, '') or (b'', '', why it failed); a pair -> both PNGs, one hash.
    Runs in the pool's processes."""
    item, opt = job
    if item[0] == "pair":
        (a, ha, ea), (b, hb, eb) = convert((item[1], opt)), convert((item[2], opt))
        return ((a, b), ha + hb, "") if not (ea or eb) else (b"", "", f"{'A' if ea else 'B'}: {ea or eb}")
    try:
        with _open_item(item) as img:
            if img.size[0] * img.size[1] > MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError(f"{img.size[0]}x{img.size[1]} pixels is over the limit")
            img.load()
            bg = parse_colour(opt.background)
            out = resize_policy(to_channels(upright(img), opt.channels, bg), opt.resolution, opt.resize,
                                opt.resampler, bg)
        pixels = np.asarray(out)
        digest = hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()
        buf = io.BytesIO()
        out.save(buf, format="PNG", optimize=False, compress_level=6)  # PIL's PNG is deterministic
        return buf.getvalue(), digest, ""
    except Exception as exc:  # any decode failure: the item is skipped and reported, never fatal
        return b"", "", " ".join(str(exc).split())[:160] or type(exc).__name__


def _converted(jobs: Iterable[tuple], workers: int, total: int, done: int) -> Iterator[tuple[bytes, str, str]]:
    """``convert`` over ``jobs`` in order, on ``workers`` processes, with a progress bar."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=done, unit="img", disable=None, desc="prepare")
    try:
        if workers <= 1:
            for job in jobs:
                yield convert(job)
                bar.update()
            return
        with get_context("spawn").Pool(workers) as pool:
            for result in pool.imap(convert, jobs, chunksize=32):
                yield result
                bar.update()
    finally:
        bar.close()


OURS = (shards.INDEX, shards.PROGRESS, shards.REPORT)


def _check_out(out: Path, opt: Options) -> Optional[dict]:
    """Refuse an output folder holding anything but a prepare's files; return the progress to resume, if any."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: name a new or empty folder")
    if not out.is_dir():
        return None
    others = sorted(p.name for p in out.iterdir() if p.name not in OURS
                    and not (p.name.startswith("shard-") and p.name.endswith(".tar")))
    if others:
        raise UserError(f"--out {out} holds other files ({', '.join(others[:3])}): name a new or empty folder")
    for name in (shards.PROGRESS, shards.INDEX):
        if (out / name).is_file():
            state = json.loads((out / name).read_text())
            if state.get("options") != asdict(opt):
                raise UserError(f"--out {out} holds a set prepared with other options ({state.get('options')}): "
                                "use the same options to resume, or a new folder")
            return state
    return None


def _verified(out: Path, state: Optional[dict]) -> dict:
    """The resumable state: the leading shards that still verify (a later one is redone from its start)."""
    fresh = {"options": None, "shards": [], "next": 0, "hashes": [], "skipped": [], "duplicates": []}
    if state is None:
        return fresh
    kept = []
    for entry in state["shards"]:
        if shards.check_shard(out, entry):
            break
        kept.append(entry)
    if len(kept) == len(state["shards"]):
        return state
    return fresh if not kept else _cut_state(state, kept)


def _cut_state(state: dict, kept: list[dict]) -> dict:
    n = sum(e["count"] for e in kept)
    nxt = kept[-1]["next"]
    return {**state, "shards": kept, "next": nxt, "hashes": state["hashes"][:n],
            "skipped": [s for s in state["skipped"] if s[0] < nxt],
            "duplicates": [d for d in state["duplicates"] if d[0] < nxt]}


class _Writer:
    """``webdataset.ShardWriter`` with reproducible headers, recording each finished shard in the progress."""

    def __init__(self, out: Path, opt: Options, source: Source, state: dict) -> None:
        import webdataset as wds

        self.out, self.opt, self.source, self.state = out, opt, source, state
        self.state["options"] = asdict(opt)
        self.pending: list[tuple[int, int, str]] = []  # (source index, label, hash) in the open shard
        self.seen = set(state["hashes"])
        self.writer = wds.ShardWriter(str(out / shards.PATTERN), maxcount=opt.shard_size, maxsize=float("inf"),
                                      start_shard=len(state["shards"]), verbose=0, post=self._finished,
                                      encoder=False, mtime=shards.MTIME, user=shards.OWNER, group=shards.OWNER,
                                      mode=0o444)

    def add(self, i: int, png, digest: str, error: str) -> None:
        if error:
            self.state["skipped"].append([i, self.source.names[i], error])
        elif digest in self.seen:
            self.state["duplicates"].append([i, self.source.names[i]])
        else:
            self.seen.add(digest)
            label = self.source.labels[i]
            key = f"{sum(e['count'] for e in self.state['shards']) + len(self.pending):09d}"
            sample = {"a.png": png[0], "b.png": png[1]} if self.opt.pairs else {"png": png}
            self.writer.write({"__key__": key, **sample, "cls": str(label).encode()})
            self.pending.append((i, label, digest))

    def _finished(self, fname: str) -> None:
        path = Path(fname)
        if not self.pending:  # ShardWriter opens its next shard eagerly; an empty one is not a shard
            path.unlink(missing_ok=True)
            return
        entry = shards.shard_entry(path, [p[1] for p in self.pending], 2 if self.opt.pairs else 1)
        entry["next"] = self.pending[-1][0] + 1
        self.state["shards"].append(entry)
        self.state["hashes"].extend(p[2] for p in self.pending)
        self.state["next"] = entry["next"]
        self.pending = []
        atomic_write_text(self.out / shards.PROGRESS, json.dumps(self.state))

    def close(self) -> None:
        self.writer.close()


def _report(out: Path, state: dict) -> None:
    lines = [f"unreadable\t{name}\t{why}" for _, name, why in state["skipped"]]
    lines += [f"duplicate\t{name}" for _, name in state["duplicates"]]
    atomic_write_text(out / shards.REPORT, "".join(line + "\n" for line in lines))


def _index(out: Path, opt: Options, source: Source, state: dict) -> dict:
    entries = [{k: v for k, v in e.items() if k != "next"} for e in state["shards"]]
    return {"format": shards.FORMAT, "count": sum(e["count"] for e in entries),
            "resolution": [opt.resolution, opt.resolution], "channels": opt.channels,
            "class_names": source.class_names, "pairs": opt.pairs, "options": asdict(opt), "shards": entries,
            "skipped": len(state["skipped"]), "duplicates": len(state["duplicates"]), "report": shards.REPORT}


@dataclass
class Summary:
    count: int
    shards: int
    skipped: int
    duplicates: int
    resumed_from: int  # shards kept from an interrupted prepare


def prepare(src: str, out: Path, opt: Options, *, workers: int = 0, root: str = "data",
            download: bool = False) -> Summary:
    """Convert ``src`` into a prepared set in ``out``; every refusal comes before anything is written."""
    _check_options(opt)
    state = _check_out(out, opt)
    if state is not None and (out / shards.INDEX).is_file():
        index = json.loads((out / shards.INDEX).read_text())
        return Summary(index["count"], len(index["shards"]), index["skipped"], index["duplicates"], len(index["shards"]))
    source = find_source(src, root, download, opt)
    state = _verified(out, state)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    resumed = len(state["shards"])
    for stale in out.glob("shard-*.tar"):  # shards after the last good one are redone
        if stale.name not in {e["name"] for e in state["shards"]}:
            stale.unlink()
    writer = _Writer(out, opt, source, state)
    jobs = ((source.items[i], opt) for i in range(state["next"], len(source.items)))
    results = _converted(jobs, workers or os.cpu_count() or 1, len(source.items), state["next"])
    for i, result in enumerate(results, start=state["next"]):
        writer.add(i, *result)
    writer.close()
    if not state["shards"]:
        _undo(out, created)
        first = f" (e.g. {state['skipped'][0][1]}: {state['skipped'][0][2]})" if state["skipped"] else ""
        raise UserError(f"no readable images in {src}: {len(state['skipped'])} unreadable{first}")
    _report(out, state)
    index = _index(out, opt, source, state)
    atomic_write_text(out / shards.INDEX, json.dumps(index, indent=1))
    (out / shards.PROGRESS).unlink(missing_ok=True)
    return Summary(index["count"], len(index["shards"]), index["skipped"], index["duplicates"], resumed)


def _undo(out: Path, created: bool) -> None:
    """A prepare that produced nothing leaves nothing behind."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for p in out.iterdir():
        if p.name in OURS or p.name.startswith("shard-"):
            p.unlink()
