"""A family's ``OptimizerSpec`` made into a torch optimizer, and its schedules applied before every update.

The spec says which optimizer and hyper-parameters (``families/contract.py``); what it leaves at None comes from the
run's ``train.optimizer`` / ``train.beta1`` / ``train.beta2``, so the families that keep the default recipe train
exactly as before the spec knew about them. Schedules are pure functions of the step: nothing to checkpoint.
"""
from __future__ import annotations

from typing import Optional

import torch

from ganforge.families.contract import OptimizerSpec
from ganforge.train.schedule import apply_lr, remember_base_lr


def make_optimizer(params, lr: float, tc, device: torch.device,
                   spec: Optional[OptimizerSpec] = None) -> torch.optim.Optimizer:
    """Adam (fused: one kernel for all parameters, and the device-side NaN skip), AdamW, RMSprop (the WGAN paper's)
    or SGD, as ``spec`` says, else as the train keys say."""
    kind = (spec.kind if spec is not None else None) or tc.optimizer
    betas = (spec.betas if spec is not None else None) or (tc.beta1, tc.beta2)
    eps, decay, momentum = (spec.eps, spec.weight_decay, spec.momentum) if spec is not None else (1e-8, 0.0, 0.0)
    fused = device.type in ("cuda", "cpu")
    if kind == "rmsprop":
        opt: torch.optim.Optimizer = torch.optim.RMSprop(params, lr=lr, eps=eps, weight_decay=decay, momentum=momentum)
    elif kind == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=decay)
    elif kind == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=decay, fused=fused)
    else:
        opt = torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=decay, fused=fused)
    remember_base_lr(opt)  # the schedule (train.lr_decay) and the rollbacks work from this base rate
    return opt


def build_optimizers(specs: dict[str, OptimizerSpec], nets: dict[str, torch.nn.Module], tc,
                     device: torch.device) -> dict[str, torch.optim.Optimizer]:
    """Every optimizer a trainer declares, over the parameters of the networks each one updates."""
    return {name: make_optimizer([p for n in s.networks for p in nets[n].parameters()], s.lr, tc, device, s)
            for name, s in specs.items()}


def set_hyperparameters(opt: torch.optim.Optimizer, spec: OptimizerSpec, step: int, total_steps: int,
                        decay: Optional[float]) -> None:
    """Before update ``step``: the spec's scheduled values, and the learning rate times ``decay`` (train.lr_decay's
    factor; None when off). A spec without schedules and no decay leaves the optimizer as it is."""
    schedules = spec.schedules
    if "lr" in schedules or decay is not None:
        relative = schedules["lr"](step, total_steps) / spec.lr if "lr" in schedules else 1.0
        apply_lr(opt, (1.0 if decay is None else decay) * relative)  # times the base: rollbacks' factor kept
    for key, schedule in schedules.items():
        if key == "lr":
            continue
        value = float(schedule(step, total_steps))
        for group in opt.param_groups:
            if key in ("beta1", "beta2"):
                b1, b2 = group["betas"]
                group["betas"] = (value, b2) if key == "beta1" else (b1, value)
            else:
                group[key] = value
