"""What a checkpoint holds of a run, and putting it back: every network and EMA copy, optimizer, loss scale, RNG
state, the family's extra state, the log window and the position inside the epoch (``Run.save``, ``--resume`` and
the guards' rollbacks). Checkpoint keys are ganforge 0.1's (``G.*``, ``G_ema.*``, ``opt_g``, ``fixed.z``)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import torch

from ganforge.checkpoint import capture_rng, flatten_modules, flatten_optimizer, restore_rng, save_checkpoint
from ganforge.io_utils import atomic_write_text
from ganforge.train.guards import tensors_finite
from ganforge.train.parts import LogWindow, Models, Position


def opt_key(name: str) -> str:
    """Checkpoint key of an optimizer ("G" -> "opt_g", as ganforge 0.1 wrote them)."""
    return f"opt_{name.lower()}"


def match_param_layout(opt: torch.optim.Optimizer) -> None:
    """Give loaded moment tensors their parameter's strides (checkpoints store them contiguous).

    Fused/foreach Adam walks parameter and state storage in lockstep, so a channels_last weight with an NCHW
    ``exp_avg`` would pair the wrong elements: resume would silently diverge.
    """
    for group in opt.param_groups:
        for p in group["params"]:
            for key, val in opt.state.get(p, {}).items():
                if torch.is_tensor(val) and val.shape == p.shape and val.stride() != p.stride():
                    opt.state[p][key] = torch.empty_like(p, dtype=val.dtype).copy_(val)


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop lines logged after the checkpoint so the history has no duplicates."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("step", 0) <= step:
            keep.append(line)
    atomic_write_text(path, "".join(l + "\n" for l in keep))


def write_checkpoint(root: Path, m: Models, at: Position, window: LogWindow, config: dict[str, Any],
                     fingerprint: dict, reason: str, best: bool, keep: int) -> Optional[Path]:
    """The run's state as a checkpoint under ``root``; None (nothing written) when the weights hold NaN/Inf."""
    modules = {name: net.state_dict() for name, net in m.nets.items()}
    modules.update({f"{name}_ema": ema.model.state_dict() for name, ema in m.ema.items()})
    weights = flatten_modules(modules)
    if not tensors_finite(weights.values()):
        return None
    weights.update({f"fixed.{k}": v.contiguous() for k, v in m.fixed.tensors.items()})
    rng_tensors, rng_meta = capture_rng()
    optim: dict[str, torch.Tensor] = dict(rng_tensors)
    meta: dict[str, Any] = {}
    for name, opt in m.optimizers.items():
        tensors, meta[opt_key(name)] = flatten_optimizer(opt_key(name), opt.state_dict())
        optim.update(tensors)
    extra_tensors, extra_meta = m.trainer.extra_state()
    optim.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in extra_tensors.items()})
    state = {"position": at.pos, "config": config, "optimizers": meta,
             "rng": rng_meta, "log_window": window.state(), "best_value": at.best_value,
             "reason": reason, "fingerprint": fingerprint, "time": time.time(), "extra": extra_meta}
    if m.updater.scalers:  # fp16 loss scales: plain numbers
        state["scalers"] = {name.lower(): s.state_dict() for name, s in m.updater.scalers.items()}
    return save_checkpoint(root, epoch=at.epoch, step=at.step, weights=weights, optim=optim, state=state, keep=keep,
                           best=best)


def restore(m: Models, at: Position, ckpt, dist) -> None:
    """Networks, EMA copies, optimizers, loss scales, RNG states, the family's extra state, the position."""
    for name, net in m.nets.items():
        net.load_state_dict(ckpt.module_state(name))
    for name, ema in m.ema.items():
        ema.model.load_state_dict(ckpt.module_state(f"{name}_ema") or ckpt.module_state(name))
    for name, opt in m.optimizers.items():
        opt.load_state_dict(ckpt.optimizer_state(opt_key(name)))
        match_param_layout(opt)
    restore_rng(ckpt.optim, ckpt.state["rng"])
    dist.sync_rng()  # a CUDA generator is per device: every rank continues rank 0's stream
    saved_scalers = ckpt.state.get("scalers") or {}
    for name, scaler in m.updater.scalers.items():
        if name.lower() in saved_scalers:
            scaler.load_state_dict(saved_scalers[name.lower()])
    extra = {k[len("extra."):]: v for k, v in ckpt.optim.items() if k.startswith("extra.")}
    m.trainer.load_extra_state(extra, ckpt.state.get("extra", {}))
    at.step, at.epoch, at.pos = ckpt.state["step"], ckpt.state["epoch"], ckpt.state["position"]
