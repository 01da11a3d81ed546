"""The run's models, built in one place: the networks on the device, the family's trainer and the optimizers its
specs declare (``trainer_and_optimizers``, also what ``train.compile``'s probe step uses), EMA copies, loss scalers
and the updater, and the fixed inputs of the sample grids."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from ganforge.errors import UserError
from ganforge.families import Family, batch_multiple, build_networks, count_parameters
from ganforge.families.contract import OptimizerSpec, RunContext, Trainer, trainer_class
from ganforge.train.distributed import Dist
from ganforge.train.ema import EMA
from ganforge.train.engine import Updater, run_step
from ganforge.train.init_from import init_ema, init_networks
from ganforge.train.optim import build_optimizers
from ganforge.train.parts import Models

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
SKIPPED = "skipped"  # the stat the loop adds to every family's: updates refused for a NaN/Inf


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def accumulation(per_device: Optional[int], local: int, multiple: int) -> int:
    """Micro-batches per update for train.batch_per_device; a UserError unless they split the share evenly."""
    if per_device is None or per_device == local:
        return 1
    if per_device > local:
        raise UserError(f"train.batch_per_device={per_device} is more than each device's share of the batch "
                        f"({local}): use at most {local}, or leave it unset")
    if local % per_device or per_device % multiple:
        raise UserError(f"train.batch_per_device={per_device} must divide each device's share of the batch "
                        f"({local}) and be a multiple of the model's batch multiple {multiple}")
    return local // per_device


def trainer_and_optimizers(cfg, family: Family, nets: dict[str, nn.Module], ctx: RunContext
                           ) -> tuple[Trainer, dict[str, OptimizerSpec], dict[str, torch.optim.Optimizer]]:
    """The family's trainer over ``nets``, its optimizer specs, and the optimizers built from them."""
    trainer: Trainer = trainer_class(family.trainer)(cfg, nets, ctx)
    specs = trainer.optimizers()
    return trainer, specs, build_optimizers(specs, nets, cfg.train, ctx.device)


def build_models(cfg, family: Family, dist: Dist, dataset, total_steps: int, init_from: Optional[Path]) -> Models:
    """Networks on the device in their memory format, identical on every rank; optimizers, EMA copies, loss
    scalers and the family's trainer; the fixed inputs of the sample grids."""
    tc, device = cfg.train, dist.device
    nets = build_networks(cfg.model)
    source_ema = init_networks(nets, init_from, cfg) if init_from is not None else None  # --init-from
    params = {name: count_parameters(net) for name, net in nets.items()}
    memory_format = torch.channels_last if (tc.channels_last and family.convolutional) else torch.contiguous_format
    for net in nets.values():
        net.to(device, memory_format=memory_format)
        dist.broadcast_module(net)  # identical replicas from the first step
    ctx = RunContext(device, memory_format, AMP_DTYPES[tc.precision], dist.rank, dist.world_size, total_steps,
                     dataset)
    trainer, specs, optimizers = trainer_and_optimizers(cfg, family, nets, ctx)
    ema = {n: EMA(nets[n], tc.ema.decay, tc.ema.start_step) for n in trainer.ema_networks
           if tc.ema.enabled and n in nets}
    init_ema(ema, source_ema)  # --init-from: the source run's EMA copies (train/init_from.py)
    if tc.sync_batchnorm and dist.enabled:  # after the EMA copies: their BatchNorm re-estimation stays local
        for name, net in nets.items():  # same parameter objects: the optimizers still hold them
            nets[name] = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    scalers = {name: torch.amp.GradScaler(device.type) for name in specs} if tc.precision == "fp16" else {}
    multiple = batch_multiple(cfg.model)
    updater = Updater(nets, optimizers, {n: s.networks for n, s in specs.items()}, dist, scalers,
                      accumulation(tc.batch_per_device, dist.local_batch(tc.batch_size, multiple), multiple))
    fixed = trainer.fixed_inputs(tc.seed, tc.n_fixed)
    return Models(nets, params, ctx, trainer, optimizers, ema, updater, fixed, specs)


def probe_step(cfg, family: Family, ctx: RunContext, dist: Dist, dataset, nets: dict[str, nn.Module]) -> None:
    """One training step of copies of the networks (own trainer and optimizers): ``train.compile``'s probe."""
    tc = cfg.train
    trainer, specs, optimizers = trainer_and_optimizers(cfg, family, nets, ctx)
    updater = Updater(nets, optimizers, {n: s.networks for n, s in specs.items()})
    n = dist.local_batch(tc.batch_size, batch_multiple(cfg.model))
    items = [dataset[i % len(dataset)] for i in range(n)]
    x = torch.stack([torch.as_tensor(item[0]) for item in items]).to(ctx.device)
    y = torch.as_tensor([int(item[1]) for item in items]).to(ctx.device)
    run_step(trainer, updater, (*trainer.stat_keys, SKIPPED), [(x, y)] * tc.d_steps, 0)
