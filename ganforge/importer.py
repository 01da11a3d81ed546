"""Importing generator weights saved by plain PyTorch (``torch.save(G.state_dict(), "G.pt")``).

A ``.pt``/``.pth`` file is a pickle. ``torch.load(weights_only=True)`` restricts unpickling to tensors and plain
containers, which blocks the known code-execution tricks, but it is still a pickle parser fed an untrusted file:
ganforge asks for an explicit ``--trust`` before touching one, and stores the result as safetensors + JSON.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ganforge.checkpoint import flatten_modules, save_checkpoint
from ganforge.config import RunConfig, dump_config
from ganforge.errors import UserError
from ganforge.io_utils import atomic_write_text
from ganforge.models import build_models


def _load_tensors(weights: Path):
    """``torch.load(weights_only=True)``, with one line of ganforge's own when it refuses the file: torch's message
    would suggest loading it with ``weights_only=False``, which runs whatever code the pickle holds."""
    import warnings
    import zipfile

    with open(weights, "rb") as fh:
        legacy_pickle = fh.read(1) == b"\x80"
    if not (zipfile.is_zipfile(weights) or legacy_pickle):  # neither torch's zip format nor its old pickle
        raise UserError(f"{weights} is not a PyTorch weights file: ganforge imports what torch.save(G.state_dict(), "
                        "path) writes (.pt/.pth)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols are for its developers
            return torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - sorted below; anything else keeps its traceback
        if type(exc).__name__ == "UnpicklingError":  # the weights-only reader met an object it will not build
            raise UserError(f"{weights} holds Python objects besides tensors (a whole pickled model?), which "
                            "torch.load(weights_only=True) refuses and ganforge never unpickles: save the generator's "
                            "state dict (torch.save(G.state_dict(), path)) and import that") from None
        if isinstance(exc, (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError)):
            raise UserError(f"{weights} is damaged or not a PyTorch weights file ({type(exc).__name__}): ganforge "
                            "imports what torch.save(G.state_dict(), path) writes") from None
        raise


def import_generator(weights: Path, cfg: RunConfig, out: Path, trust: bool = False, key: Optional[str] = None) -> Path:
    """Write a run directory at ``out`` whose generator holds the weights of ``weights``; returns its checkpoint."""
    weights, out = Path(weights), Path(out)
    if not trust:
        raise UserError(f"{weights} is a pickle-based PyTorch file: pass --trust if it comes from a source you trust "
                        "(it is read with torch.load(weights_only=True), never as arbitrary objects)")
    if not weights.is_file():
        raise UserError(f"weights file {weights} does not exist")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"output directory {out} already exists and is not empty: choose another --out")
    obj = _load_tensors(weights)
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise UserError(f"{weights} has no entry {key!r}: top-level keys are {list(obj)[:10] if isinstance(obj, dict) else type(obj)}")
        obj = obj[key]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise UserError(f"{weights} is not a state dict of tensors (use --key NAME when it is nested, e.g. --key netG)")
    state = {k.removeprefix("module."): v for k, v in obj.items()}  # DataParallel/DDP prefixes
    G, _ = build_models(cfg.model)
    missing, unexpected = G.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{weights} does not fit preset {cfg.name!r} ({cfg.model.family}, {cfg.model.image_size}px): "
                        f"missing {missing[:4]}, unexpected {unexpected[:4]}; pick the matching preset or --set model.*")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    meta = {"config": cfg.model_dump(mode="json"), "optimizers": {}, "rng": {}, "position": 0,
            "imported_from": str(weights), "reason": "import"}
    return save_checkpoint(out / "checkpoints", epoch=0, step=0, weights=flatten_modules({"G": G.state_dict()}),
                           optim={}, state=meta)
