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
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
from PIL import Image

from ganforge.apps.prepare_sources import Options, Source, find_source, read_member
from ganforge.data import shards
from ganforge.data.imageops import MAX_IMAGE_PIXELS, RESAMPLERS, RESIZE_POLICIES, error_text, parse_colour, \
    resize_policy, to_channels, upright
from ganforge.errors import UserError
from ganforge.io_utils import atomic_temp_target, atomic_write_text

__all__ = ["Options", "Source", "Summary", "convert", "find_source", "prepare"]

WORKERS_PER_CORE = 4  # --workers above this many per core is refused: processes would only fight for the cores


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


def _open_item(item: tuple) -> Image.Image:
    if item[0] == "file":
        return Image.open(item[1])
    if item[0] == "zip":
        return Image.open(io.BytesIO(read_member(item[1], item[2])))
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
        return b"", "", error_text(exc)


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
        pool, interrupted = _pool(workers), False
        try:
            for result in pool.imap(convert, jobs, chunksize=32):
                yield result
                bar.update()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            pool.terminate()
            pool.join()
        if interrupted:  # raised afresh: the first one's traceback would keep the pool (and its semaphores) alive
            del pool
            raise KeyboardInterrupt
    finally:
        bar.close()


def _pool(workers: int):
    """A spawn pool whose processes ignore Ctrl-C from their first instruction (they inherit SIG_IGN while it is
    made): the parent alone stops the work and says how to resume, with no traceback per process."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return get_context("spawn").Pool(workers)
    finally:
        signal.signal(signal.SIGINT, previous)


def pool_size(workers: int, pending: int) -> int:
    """--workers checked (0: one per core) and never more processes than images left to convert."""
    cores = os.cpu_count() or 1
    if workers < 0 or workers > WORKERS_PER_CORE * cores:
        raise UserError(f"--workers {workers}: 0 (one per core) or 1 to {WORKERS_PER_CORE * cores} (this machine "
                        f"has {cores} cores)")
    return max(1, min(workers or cores, pending))


OURS = (shards.INDEX, shards.PROGRESS, shards.REPORT)


def _check_out(out: Path, opt: Options) -> Optional[dict]:
    """Refuse an output folder holding anything but a prepare's files; return the progress to resume, if any.
    Temp files of our own interrupted writes (a Ctrl-C between a temp's creation and its rename) are removed."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: name a new or empty folder")
    if not out.is_dir():
        return None
    for p in out.iterdir():
        if atomic_temp_target(p.name) in OURS:
            p.unlink(missing_ok=True)
    others = sorted(p.name for p in out.iterdir() if p.name not in OURS
                    and not (p.name.startswith("shard-") and p.name.endswith(".tar")))
    if others:
        raise UserError(f"--out {out} holds other files ({', '.join(others[:3])}): name a new or empty folder")
    for name in (shards.PROGRESS, shards.INDEX):
        if (out / name).is_file():
            state = _read_state(out / name)
            if state.get("options") != asdict(opt):
                raise UserError(f"--out {out} holds a set prepared with other options ({state.get('options')}): "
                                "use the same options to resume, or a new folder")
            return state
    return None


STATE_KEYS = {shards.PROGRESS: ("options", "shards", "next", "hashes", "skipped", "duplicates"),
              shards.INDEX: ("options", "shards", "count", "skipped", "duplicates")}


def _read_state(path: Path) -> dict:
    """progress.json or index.json of an earlier prepare; one line when it is damaged."""
    try:
        state = json.loads(path.read_text())
        ok = isinstance(state, dict) and all(k in state for k in STATE_KEYS[path.name]) \
            and isinstance(state["shards"], list) and all(shards.entry_ok(e) for e in state["shards"])
    except (OSError, ValueError) as exc:
        ok, state = False, error_text(exc, 80)
    if not ok:
        raise UserError(f"--out {path.parent}: its {path.name} is damaged ({str(state)[:60]}): delete {path.parent} "
                        "and prepare again, or prepare into a new folder")
    return state


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
    complete: bool = False  # --out already held this set, finished: nothing was done


def prepare(src: str, out: Path, opt: Options, *, workers: int = 0, root: str = "data",
            download: bool = False) -> Summary:
    """Convert ``src`` into a prepared set in ``out``; every refusal comes before anything is written."""
    _check_options(opt)
    pool_size(workers, 1)  # the bounds, before anything is read
    state = _check_out(out, opt)
    source = find_source(src, root, download, opt)
    if state is not None:
        _same_source(out, state, source)
    if state is not None and (out / shards.INDEX).is_file():
        return Summary(state["count"], len(state["shards"]), state["skipped"], state["duplicates"], 0, complete=True)
    state = _verified(out, state)
    state["source"] = source.fingerprint()
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    resumed = len(state["shards"])
    for stale in out.glob("shard-*.tar"):  # shards after the last good one are redone
        if stale.name not in {e["name"] for e in state["shards"]}:
            stale.unlink()
    writer = _Writer(out, opt, source, state)
    jobs = ((source.items[i], opt) for i in range(state["next"], len(source.items)))
    results = _converted(jobs, pool_size(workers, len(source.items) - state["next"]), len(source.items),
                         state["next"])
    interrupted = False
    try:
        for i, result in enumerate(results, start=state["next"]):
            writer.add(i, *result)
    except KeyboardInterrupt:
        interrupted = True
    if interrupted:  # outside the handler, so that no traceback keeps the pool's semaphores alive
        results.close()
        import gc

        gc.collect()  # the stopped pool's reference cycles: their semaphores are released now, not leaked at exit
        raise KeyboardInterrupt(f"interrupted: {len(state['shards'])} finished shards kept in {out}; run the same "
                                "command again to resume from there")
    writer.close()
    if not state["shards"]:
        _undo(out, created)
        first = f" (e.g. {state['skipped'][0][1]}: {state['skipped'][0][2]})" if state["skipped"] else ""
        raise UserError(f"no readable images in {src}: {len(state['skipped'])} unreadable{first}")
    _report(out, state)
    index = {**_index(out, opt, source, state), "source": source.fingerprint()}
    atomic_write_text(out / shards.INDEX, json.dumps(index, indent=1))
    (out / shards.PROGRESS).unlink(missing_ok=True)
    return Summary(index["count"], len(index["shards"]), index["skipped"], index["duplicates"], resumed)


def _same_source(out: Path, state: dict, source: Source) -> None:
    """A set (finished or interrupted) belongs to the source as it was listed then: a changed one is refused."""
    then, now = state.get("source"), source.fingerprint()
    if then is None or then == now:
        return
    what = "a finished set" if "count" in state else "an interrupted prepare"
    more = f"now {now['count']} images, then {then['count']}" if now["count"] != then["count"] else \
        f"{now['count']} images, some other files"
    raise UserError(f"--out {out} holds {what} of {state['options']['source']}, which has changed since ({more}): "
                    f"prepare into a new --out (or delete {out}) to include the change")


def _undo(out: Path, created: bool) -> None:
    """A prepare that produced nothing leaves nothing behind."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for p in out.iterdir():
        if p.name in OURS or p.name.startswith("shard-"):
            p.unlink()
