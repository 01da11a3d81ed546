"""Weights files fetched once into torch's hub cache, SHA-256 checked; offline, a one-line error with the fix.

``GANFORGE_OFFLINE=1`` (the tests set it) forbids any download: a missing file is then the same clear error as a
failed download. A file whose hash differs from the published one is deleted and refused (exit 2), so a broken
or tampered download never scores anything.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ganforge.errors import UserError

OFFLINE_ENV = "GANFORGE_OFFLINE"
CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightsFile:
    """One published weights file: where it comes from and its SHA-256 (the full published digest)."""

    what: str  # "Inception-v3", "DINOv2 ViT-B/14"
    url: str
    filename: str
    sha256: str
    size_text: str = ""  # "~91 MB", for the messages


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def hub_checkpoints() -> Path:
    """torch hub's checkpoints folder (honours TORCH_HOME), where torch-fidelity and pytorch-fid keep weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _progress(total: Optional[int], desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=True)


def download(spec: WeightsFile, fix: str, dest_dir: Optional[Path] = None) -> Path:
    """``spec``'s file in ``dest_dir`` (default: the hub cache), downloaded now with a progress bar and checked.

    ``fix``: what the user can do instead (pass a local path...), ended on every error line.
    """
    dest = (dest_dir or hub_checkpoints()) / spec.filename
    if offline():
        raise UserError(f"{spec.what} weights {spec.filename}{' (' + spec.size_text + ')' if spec.size_text else ''} "
                        f"are not in {dest.parent} and {OFFLINE_ENV} forbids downloading them: download {spec.url} "
                        f"and {fix}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(spec.url, timeout=60) as resp:
            length = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
            with open(part, "wb") as out, _progress(int(length) if length else None, spec.filename) as bar:
                for chunk in iter(lambda: resp.read(CHUNK), b""):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise UserError(f"could not download {spec.what} weights from {spec.url} ({reason}): download it by hand "
                        f"and {fix}") from None
    got = h.hexdigest()
    if got != spec.sha256:
        part.unlink(missing_ok=True)
        raise UserError(f"downloaded {spec.filename} has SHA-256 {got[:16]}..., expected {spec.sha256[:16]}... "
                        f"(deleted): retry, or download {spec.url} by hand and {fix}")
    os.replace(part, dest)
    return dest
