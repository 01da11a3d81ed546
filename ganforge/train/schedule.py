"""Learning-rate schedules as pure functions of the step: nothing to checkpoint, so resume stays exact.

Each optimizer param group keeps its base rate in ``initial_lr`` (the key torch's own schedulers use; it is saved
with the optimizer state). The guards' rollbacks scale that base, and every step sets ``lr = initial_lr * factor``.
"""
from __future__ import annotations

import math

import torch


def lr_factor(step: int, total_steps: int, kind: str = "none", start: float = 0.0) -> float:
    """Multiplier of the base learning rate before update ``step`` (0-based) of ``total_steps``.

    ``linear`` and ``cosine`` hold 1 until ``start * total_steps``, then fall to 0 at the end of the budget
    (the last update runs at a small positive rate). Extending a run's budget on resume stretches the decay.
    """
    if kind == "none" or total_steps <= 0:
        return 1.0
    begin = math.floor(start * total_steps)
    if step < begin:
        return 1.0
    t = min(1.0, (step - begin) / (total_steps - begin))  # in [0, 1): progress through the decay
    if kind == "linear":
        return 1.0 - t
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"unknown lr_decay {kind!r}")


def remember_base_lr(opt: torch.optim.Optimizer) -> None:
    for group in opt.param_groups:
        group.setdefault("initial_lr", group["lr"])


def scale_base_lr(opt: torch.optim.Optimizer, factor: float) -> None:
    """A rollback's lower learning rate: the base and the current rate alike."""
    for group in opt.param_groups:
        group["initial_lr"] = group.get("initial_lr", group["lr"]) * factor
        group["lr"] *= factor


def apply_lr(opt: torch.optim.Optimizer, factor: float) -> None:
    for group in opt.param_groups:  # setdefault: a checkpoint from before schedules existed has no base rate saved
        group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor
