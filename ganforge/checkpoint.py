"""Checkpoints: tensors in safetensors, everything else in JSON, never pickle.

Layout of one checkpoint, a directory under ``RUN/checkpoints/``::

    ckpt-e0003-s00000468/
        weights.safetensors   models by prefix: "G.", "D.", "G_ema.", plus "fixed.z" / "fixed.y"
        optim.safetensors     optimizer tensors ("opt_g.state.<i>.<key>") and torch RNG states ("rng.*")
        state.json            step, epoch, position in the epoch, config, optimizer hyperparameters, Python/NumPy RNG
        manifest.json         SHA-256 of the three files above; written last

The directory is built under a temporary name, every file fsynced, then renamed into place and the parent
fsynced; ``latest`` (a one-line text file) is replaced atomically afterwards. A reader therefore sees either the
old or the new checkpoint, never half of one; a checkpoint whose manifest does not verify is skipped and the
previous good one is used.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ganforge.errors import UserError
from ganforge.io_utils import atomic_write_text, fsync_dir

FORMAT_VERSION = 1
_FILES = ("weights.safetensors", "optim.safetensors", "state.json")
_NAME_RE = re.compile(r"^ckpt-e(\d+)-s(\d+)$")


T = TypeVar("T")


class CheckpointError(UserError):
    """A checkpoint is missing or does not verify."""


@dataclass
class Checkpoint:
    path: Path
    weights: dict[str, torch.Tensor]
    optim: dict[str, torch.Tensor]
    state: dict[str, Any]

    def module_state(self, prefix: str) -> dict[str, torch.Tensor]:
        """The state dict saved under ``prefix`` (e.g. "G"), or {} when absent."""
        p = prefix + "."
        return {k[len(p):]: v for k, v in self.weights.items() if k.startswith(p)}

    def optimizer_state(self, name: str) -> dict[str, Any]:
        return unflatten_optimizer(name, self.optim, self.state["optimizers"][name])


# ------------------------------------------------------------------------------------------------ flattening


def flatten_modules(modules: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for prefix, sd in modules.items():
        for k, v in sd.items():
            out[f"{prefix}.{k}"] = v.detach().to("cpu").contiguous().clone()
    return out


def flatten_optimizer(name: str, sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state dict -> (tensors for safetensors, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in sd["state"].items():
        for key, val in pstate.items():
            if torch.is_tensor(val):
                tensors[f"{name}.state.{pid}.{key}"] = val.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[key] = val
    groups = json.loads(json.dumps(sd["param_groups"], default=_json_default))
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"{name}.state."
    for k, v in tensors.items():
        if k.startswith(prefix):
            pid, key = k[len(prefix):].split(".", 1)
            state.setdefault(int(pid), {})[key] = v
    for pid, vals in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(vals)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def _json_default(o: Any) -> Any:
    if isinstance(o, tuple):
        return list(o)
    if torch.is_tensor(o):
        return o.item() if o.numel() == 1 else o.tolist()
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


# ------------------------------------------------------------------------------------------------ RNG


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every RNG the run touches: torch CPU and CUDA (tensors), Python and NumPy (JSON)."""
    tensors = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    if "rng.torch_cpu" in tensors:
        torch.set_rng_state(tensors["rng.torch_cpu"])
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda][: torch.cuda.device_count()])
    if "python" in meta:
        v, st, gauss = meta["python"]
        random.setstate((v, tuple(st), gauss))
    if "numpy" in meta:
        name, keys, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# ------------------------------------------------------------------------------------------------ save / load


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def checkpoint_name(epoch: int, step: int) -> str:
    return f"ckpt-e{epoch:04d}-s{step:08d}"


def save_checkpoint(
    root: Path,
    *,
    epoch: int,
    step: int,
    weights: dict[str, torch.Tensor],
    optim: dict[str, torch.Tensor],
    state: dict[str, Any],
    keep: int = 3,
    best: bool = False,
) -> Path:
    """Write one checkpoint atomically, point ``latest`` (and ``best`` when asked) at it, prune to ``keep``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(epoch, step)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        save_file(weights, str(tmp / "weights.safetensors"), metadata={"format": "ganforge", "version": str(FORMAT_VERSION)})
        save_file(optim or {"_empty": torch.zeros(0)}, str(tmp / "optim.safetensors"))
        full_state = dict(state, format_version=FORMAT_VERSION, epoch=epoch, step=step)
        (tmp / "state.json").write_text(json.dumps(full_state, default=_json_default))
        for name in _FILES:
            _fsync_file(tmp / name)
        manifest = {"format_version": FORMAT_VERSION, "sha256": {n: _sha256(tmp / n) for n in _FILES}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        _fsync_file(tmp / "manifest.json")
        fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / "latest", final.name + "\n")
    if best:
        atomic_write_text(root / "best", final.name + "\n")
    prune(root, keep)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete-looking checkpoint directories, newest (highest step) first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(2)), p) for p in root.iterdir() if p.is_dir() and (m := _NAME_RE.match(p.name))]
    return [p for _, p in sorted(found, key=lambda t: t[0], reverse=True)]


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (and the ``best`` one), and temp dirs left by a crash."""
    best = root / "best"
    keep_best = best.read_text().strip() if best.is_file() else None
    for p in list_checkpoints(root)[keep:]:
        if p.name != keep_best:
            shutil.rmtree(p, ignore_errors=True)
    for p in Path(root).glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)


def verify(path: Path) -> None:
    """Raise CheckpointError unless every file matches the manifest."""
    man_path = path / "manifest.json"
    if not man_path.is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete: manifest.json is missing")
    try:
        manifest = json.loads(man_path.read_text())
        sums = manifest["sha256"]
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} has an unreadable manifest.json ({exc})") from None
    for name in _FILES:
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing")
        if _sha256(f) != sums.get(name):
            raise CheckpointError(f"checkpoint {path} is corrupt: {name} does not match its SHA-256 in manifest.json")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    path = Path(path)
    verify(path)
    weights = load_file(str(path / "weights.safetensors"), device=str(map_location))
    optim = load_file(str(path / "optim.safetensors"), device="cpu")
    optim.pop("_empty", None)
    state = json.loads((path / "state.json").read_text())
    return Checkpoint(path=path, weights=weights, optim=optim, state=state)


def _warn_stderr(message: str) -> None:
    """Warnings go to stderr: stdout carries the command's result (a path, a table) for scripts."""
    import sys

    print(message, file=sys.stderr)


def load_latest(root: Path, map_location: str | torch.device = "cpu", warn=None) -> Checkpoint:
    """The newest checkpoint that verifies: ``latest`` first, then older ones (a corrupt one is reported, skipped)."""
    return load_newest(root, lambda ckpt: ckpt, map_location, warn)


def load_newest(root: Path, use: Callable[[Checkpoint], T], map_location: str | torch.device = "cpu",
                warn=None) -> T:
    """``use`` of the newest checkpoint it accepts, ``latest`` first: one that is corrupt, or that verifies but
    whose tensors do not fit the networks (``load_state_dict``'s RuntimeError), is reported and skipped, so
    sampling, export and the demo fall back to an older one as resume does. A UserError from ``use`` (the wrong
    kind of run) is not the checkpoint's fault and is raised."""
    root = Path(root)
    warn = warn or _warn_stderr
    candidates = list_checkpoints(root)
    pointer = root / "latest"
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if named in candidates:
            candidates.remove(named)
            candidates.insert(0, named)
    if not candidates:
        raise CheckpointError(f"no checkpoint in {root}: train first (ganforge train ... --out RUN_DIR)")
    errors = []
    for cand in candidates:
        try:
            return use(load_checkpoint(cand, map_location))
        except (CheckpointError, OSError, ValueError, RuntimeError, KeyError) as exc:
            why = " ".join(str(exc).split())[:300]
            errors.append(why)
            warn(f"warning: skipping {cand.name}: {why}")
    raise CheckpointError(f"no loadable checkpoint in {root}: " + "; ".join(errors))
