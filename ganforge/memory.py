"""Refuse up front what cannot fit: a command that asks for more memory or disk than the machine has says so in
one line instead of starting (and failing after minutes, or taking the machine down with it)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ganforge.errors import UserError
from ganforge.io_utils import first_existing

SHARE = 0.8  # of the memory available now that one command may plan to use


def available_memory() -> int:
    """Bytes of memory available to a new allocation now (MemAvailable where the kernel reports it)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def require_memory(nbytes: float, what: str, fix: str) -> None:
    """One line and exit 2 when ``what`` needs more than the memory available now."""
    have = available_memory()
    if nbytes > SHARE * have:
        raise UserError(f"{what} needs about {human_bytes(nbytes)} of memory at once and this machine has "
                        f"{human_bytes(have)} free: {fix}")


def require_disk(nbytes: float, where: Path, what: str, fix: str) -> None:
    """One line and exit 2 when ``what`` would surely not fit on the disk that holds ``where``."""
    probe = first_existing(where)
    free = shutil.disk_usage(probe).free
    if nbytes > free:
        raise UserError(f"{what} needs at least {human_bytes(nbytes)} of disk and {probe} has {human_bytes(free)} "
                        f"free: {fix}")
