"""Atomic file writes: a reader (or a crash) never sees half a file.

Write to a temp file in the same directory, flush + fsync, ``os.replace`` onto the target, fsync the directory.
"""
from __future__ import annotations

import contextlib
import json
import functools
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator, Optional


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask (read once: reading it means setting it, briefly)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_target(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is fsynced and renamed onto ``path``, else deleted.

    The temp file keeps the target's suffix (writers that infer the format from the name still work) and gets
    the usual permissions (mkstemp makes 0600). Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    tmp_path = Path(tmp)
    try:
        os.close(fd)
        os.chmod(tmp_path, 0o666 & ~_umask())
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


# the name atomic_target's temp file gets: ".NAME." + mkstemp's 8 random characters + ".tmp" + NAME's suffix
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>\.[^.]+)?")


def atomic_temp_target(name: str) -> Optional[str]:
    """The file whose atomic write left the temp file ``name`` behind, or None: a signal or a crash between the
    temp's creation and its cleanup leaves one (never a finished file), and a resume must know its own."""
    m = _TEMP_NAME.fullmatch(name)
    if m is None or not m["target"].endswith(m["suffix"] or ""):
        return None
    return m["target"]


def atomic_write_bytes(path: os.PathLike | str, data: bytes) -> None:
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: os.PathLike | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def first_existing(path: os.PathLike | str) -> Path:
    """``path`` or its nearest ancestor that exists (where a new file or folder would be created)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe_writable(folder: Path) -> Optional[str]:
    """Why nothing can be created in ``folder`` (an existing directory), or None: a real probe, removed at once,
    since permission bits say nothing for root or for read-only and virtual file systems (``/proc``)."""
    try:
        probe = tempfile.mkdtemp(prefix=".ganforge-probe-", dir=folder)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.rmdir(probe)
    return None


def check_output_dir(path: os.PathLike | str, flag: str = "--out") -> None:
    """Refuse, before any work, a folder that cannot be created: a file on the way, a read-only place."""
    from ganforge.errors import UserError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder: choose a new folder name")
    base = first_existing(path)
    if not base.is_dir():
        raise UserError(f"{flag} {path}: {base} is a file, so no folder can be made under it; choose another path")
    why = _probe_writable(base)
    if why:
        raise UserError(f"{flag} {path}: cannot create anything in {base} ({why}); choose a writable path")


def check_output_file(path: os.PathLike | str, flag: str = "--out") -> None:
    """Refuse, before any work, a file that cannot be written: a folder in its place, an unwritable parent."""
    from ganforge.errors import UserError

    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder: give a file name, e.g. {path / ('out' + (path.suffix or '.png'))}")
    check_output_dir(path.parent, flag=f"{flag} {path}: its folder")


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 16 << 30


MAX_NPZ_BYTES = _memory_bytes() // 2  # what read_npz decompresses at most, all arrays together


def _check_npz_sizes(path: Path) -> None:
    """Refuse an .npz whose arrays, as their headers declare them, would not fit: a zip of a few kB can declare
    gigabytes of zeros. Only the headers are read; ``zipfile`` then reads no member past its declared size."""
    import zipfile

    import numpy as np

    from ganforge.errors import UserError

    total = 0
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(f, max_header_size=10_000)
            total += int(np.prod(shape, dtype=object)) * dtype.itemsize
            if total > MAX_NPZ_BYTES:
                raise UserError(f"{path}: its arrays take {total:,} bytes decompressed (by their headers), more than "
                                f"ganforge reads from one .npz ({MAX_NPZ_BYTES:,}, half this machine's memory): "
                                "split it, or use a folder or zip of images")


NPZ_HINT = "ganforge reads .npz files of plain arrays (numpy.savez), never pickled objects"


def read_npz(path: os.PathLike | str, what: str = "file") -> dict:
    """Every array of an ``.npz`` as a dict, without unpickling; one line naming the file when it is not one.

    numpy's own messages about pickled entries advise loading them unsafely; this one says what ganforge takes.
    """
    import zipfile

    import numpy as np

    from ganforge.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":  # numpy reads any other bytes as a pickle, and says so
            raise UserError(f"{path} is not an .npz archive: {NPZ_HINT}")
    try:
        _check_npz_sizes(path)
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise UserError(f"{path} holds pickled Python objects: {NPZ_HINT}") from None
        raise UserError(f"{path} is not a readable .npz ({' '.join(str(exc).split())[:120]}): {NPZ_HINT}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError):
        raise UserError(f"{path} is not an .npz archive: {NPZ_HINT}") from None


def read_records(path: Path) -> list[dict]:
    """The JSON objects of a ``metrics.jsonl`` (none when it is missing); blank or cut lines (a crash, a live run
    mid-write) are skipped."""
    out = []
    if Path(path).is_file():
        for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out
