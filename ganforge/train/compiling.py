"""``train.compile``: ``torch.compile`` of every network's forward, or a logged reason why the run stays eager.

Compiled in place (``nn.Module.compile``), so parameter names, checkpoints, EMA copies and the optimizers are the
ones of the eager networks. Whether compilation works depends on the machine (inductor needs a C++ compiler on
CPU, Triton on GPUs) and on the model, and a failure would otherwise surface in the middle of the first step,
after one optimizer had already moved. So a probe first compiles *copies* of the networks and runs each forward
and backward once on a batch of the run's shape, with the RNG state saved and restored; only when that works
are the real networks compiled (the probe's compiled code is reused: the copies share their modules' code).
"""
from __future__ import annotations

import copy
import shutil
from typing import Callable, Optional

import torch
from torch import nn

MODES = ("off", "default", "reduce-overhead", "max-autotune-no-cudagraphs")


def unsupported(device: torch.device) -> Optional[str]:
    """Why torch.compile cannot run here at all, or None."""
    if device.type == "cpu" and not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        return "inductor needs a C++ compiler on CPU (install g++)"
    if device.type == "mps":
        return "torch.compile's MPS support is experimental"
    return None


def probe(nets: dict[str, nn.Module], run_once: Callable[[dict[str, nn.Module]], None], mode: str) -> Optional[str]:
    """Compile copies of ``nets`` and call ``run_once`` on them; returns the error in one line, or None."""
    copies = {name: copy.deepcopy(net) for name, net in nets.items()}
    try:
        with torch.random.fork_rng(devices=_cuda_devices(copies)):
            for net in copies.values():
                net.compile(mode=mode)
            run_once(copies)
    except Exception as exc:  # noqa: BLE001 - any failure of the compiler means: train eagerly
        text = " ".join(str(exc).split()) or type(exc).__name__
        return f"{type(exc).__name__}: {text[:200]}"
    return None


def compile_networks(nets: dict[str, nn.Module], mode: str, device: torch.device,
                     run_once: Callable[[dict[str, nn.Module]], None], log: Callable[[str], None]) -> bool:
    """Compile ``nets`` in place when ``mode`` asks for it and the probe passes; True when compiled."""
    if mode == "off":
        return False
    reason = unsupported(device) or probe(nets, run_once, mode)
    if reason:
        log(f"warning: train.compile={mode} is not used, the networks run eagerly: {reason}")
        return False
    for net in nets.values():
        net.compile(mode=mode)
    log(f"torch.compile: {', '.join(nets)} compiled (mode {mode})")
    return True


def _cuda_devices(nets: dict[str, nn.Module]) -> list[int]:
    devices = {p.device.index or 0 for net in nets.values() for p in net.parameters() if p.device.type == "cuda"}
    return sorted(devices)
