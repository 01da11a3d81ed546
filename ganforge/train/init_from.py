"""``ganforge train PRESET --init-from RUN_DIR``: fine-tuning, a new run that starts from a finished run's weights.

What is copied: every network's state dict (G, D: parameters and buffers, so StyleGAN's tracked mean w and
ProGAN's stage buffers come along) and the EMA copies (``G_ema``). What is not: optimizers (fresh, no moments),
the step (0), RNG states, the family's extra state (StyleGAN's path-length mean starts again), and the config
(the new run's own; ``init_from`` records the source). The source is read only through ``ganforge.checkpoint``:
safetensors and JSON, SHA-256 verified, never unpickled. Every refusal is one line, raised while the run is built,
before its directory is made.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ganforge.checkpoint import Checkpoint, CheckpointError, list_checkpoints, load_latest
from ganforge.config import RunConfig, load_run_config
from ganforge.errors import UserError

SHOWN = 3  # differing keys named in a refusal, then a count


def source_checkpoint(run_dir: Path, cfg: RunConfig) -> Checkpoint:
    """The newest good checkpoint of ``run_dir``, refused when it is no run, has none, or is another family."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"--init-from {run_dir}: no such run directory (pass a folder made by 'ganforge train')")
    source = load_run_config(run_dir)  # a one-line UserError when this is no run directory
    if source.model.family != cfg.model.family:
        raise UserError(f"--init-from {run_dir} is a {source.model.family} run; this one is "
                        f"{cfg.model.family}: start from a run of the same family")
    if not list_checkpoints(run_dir / "checkpoints"):
        raise UserError(f"--init-from {run_dir} has no finished checkpoint: let it train to its first checkpoint "
                        f"(or resume it with 'ganforge train --resume {run_dir}')")
    try:
        return load_latest(run_dir / "checkpoints", warn=lambda _: None)
    except CheckpointError as exc:
        raise UserError(f"--init-from {run_dir}: {exc}") from None


def _few(keys: list[str]) -> str:
    more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def check_compatible(name: str, net: nn.Module, saved: dict[str, torch.Tensor], run_dir: Path) -> None:
    """Refuse, naming the keys, when ``saved`` does not fit ``net`` key for key and shape for shape."""
    own = net.state_dict()
    if not saved:
        raise UserError(f"--init-from {run_dir} holds no weights for network {name}")
    missing = [f"{name}.{k}" for k in own if k not in saved]
    extra = [f"{name}.{k}" for k in saved if k not in own]
    if missing or extra:
        parts = [f"{len(missing)} missing in it ({_few(missing)})" if missing else "",
                 f"{len(extra)} it has that this model lacks ({_few(extra)})" if extra else ""]
        raise UserError(f"--init-from {run_dir} does not fit this model's keys: {'; '.join(p for p in parts if p)}: "
                        "use the source run's model keys")
    shapes = [f"{name}.{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if tuple(saved[k].shape) != tuple(v.shape)]
    if shapes:
        raise UserError(f"--init-from {run_dir} has other shapes in {len(shapes)} tensors ({_few(shapes)}; source "
                        "vs this run): use the source run's model keys (widths, sizes, channels)")


def init_networks(nets: dict[str, nn.Module], run_dir: Path, cfg: RunConfig) -> dict[str, dict[str, torch.Tensor]]:
    """Load the source run's weights into ``nets``; return its EMA states for ``init_ema`` (the EMA copies are
    made later, from the networks)."""
    ckpt = source_checkpoint(run_dir, cfg)
    for name, net in nets.items():
        check_compatible(name, net, ckpt.module_state(name), Path(run_dir))
    emas = {name: ckpt.module_state(f"{name}_ema") for name in nets}
    for name, state in emas.items():
        if state:
            check_compatible(f"{name}_ema", nets[name], state, Path(run_dir))
    for name, net in nets.items():
        net.load_state_dict(ckpt.module_state(name))
    return {name: state for name, state in emas.items() if state}


def init_ema(ema: dict, states: Optional[dict[str, dict[str, torch.Tensor]]]) -> None:
    """Give the new run's EMA copies the source's (a source without an EMA copy leaves them copies of G)."""
    for name, copy in ema.items():
        if states and name in states:
            copy.model.load_state_dict(states[name])
