"""One adversarial update for the noise-to-image families (mlp, dcgan, cdcgan).

D step(s) then a G step, with separate real and fake batches through D (the seeds' way; it matters with
BatchNorm). Cheap by construction: fakes for D are made under no_grad (or reused with ``reuse_fake``), D's
weights don't collect gradients during the G step, and gradients are freed with ``set_to_none``.

Data-parallel (``parts.dist``, see distributed.py): each rank holds its slice of the global batch, draws the
global batch's latents and keeps its slice, and averages the gradients over the ranks before every optimizer
step. Mixed precision (``parts.amp_dtype``): forwards run under autocast, losses are computed in float32, and
fp16 scales the losses with a ``GradScaler`` per optimizer.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from ganforge.config import ModelConfig, TrainConfig
from ganforge.losses import d_loss, g_loss
from ganforge.models import pack_samples, sample_z
from ganforge.train.distributed import Dist
from ganforge.train.ema import EMA
from ganforge.train.guards import grads_finite


@dataclass
class GanParts:
    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    conditional: bool
    device: torch.device
    memory_format: torch.memory_format
    ema: Optional[EMA] = None
    dist: Dist = field(default_factory=Dist)  # this process's rank among the data-parallel replicas
    amp_dtype: Optional[torch.dtype] = None  # autocast dtype of the forwards (bf16/fp16); None: float32
    scaler_g: Optional[torch.amp.GradScaler] = None  # fp16 only: loss scaling for each optimizer
    scaler_d: Optional[torch.amp.GradScaler] = None


def _fake_labels(parts: GanParts, n: int) -> Optional[torch.Tensor]:
    if not parts.conditional:
        return None
    return torch.randint(0, parts.model_cfg.num_classes, (n,), device=parts.device)


def _latents(parts: GanParts, n: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """z and fake labels for this rank's ``n`` samples.

    Every rank draws the whole global batch from the same RNG state and keeps its slice, so the RNG streams stay
    identical across ranks and equal to a single process's with the same global batch.
    """
    world = parts.dist.world_size
    z = sample_z(n * world, parts.model_cfg, parts.device)
    y = _fake_labels(parts, n * world)
    if world > 1:
        mine = slice(parts.dist.rank * n, (parts.dist.rank + 1) * n)
        z, y = z[mine], (y[mine] if y is not None else None)
    return z, y


def _autocast(parts: GanParts):
    if parts.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(parts.device.type, dtype=parts.amp_dtype)


STAT_KEYS = ("loss_d", "loss_g", "loss_d_real", "loss_d_fake", "d_real", "d_fake", "skipped")


def _finite_update(loss: torch.Tensor, model: nn.Module, opt: torch.optim.Optimizer) -> bool:
    """Step ``opt`` only when the loss and every gradient are finite: a NaN never reaches the weights."""
    if bool(torch.isfinite(loss)) and grads_finite(model.parameters()):
        opt.step()
        return True
    opt.zero_grad(set_to_none=True)
    return False


def _update(parts: GanParts, loss: torch.Tensor, model: nn.Module, opt: torch.optim.Optimizer,
            scaler: Optional[torch.amp.GradScaler]) -> bool:
    """Backward, average the gradients over the ranks, then step ``opt`` unless something is not finite.

    With a GradScaler (fp16) a non-finite loss is still refused here, but an overflowed gradient is the scaler's
    business: it skips that step and lowers its scale (routine while the scale settles), not counted as skipped.
    """
    opt.zero_grad(set_to_none=True)
    (loss if scaler is None else scaler.scale(loss)).backward()
    loss = parts.dist.all_reduce_grads(model.parameters(), loss)  # no-op in a single process
    if scaler is None:
        return _finite_update(loss, model, opt)
    if not bool(torch.isfinite(loss)):
        opt.zero_grad(set_to_none=True)
        return False
    scaler.step(opt)
    scaler.update()
    return True


def r1_penalty(real_logits: torch.Tensor, real_in: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 on real inputs (Mescheder et al. 2018): keeps D flat on the data, so training settles
    on it instead of circling; graph kept so D's update differentiates through it."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_in, create_graph=True)
    return grad.float().pow(2).reshape(grad.shape[0], -1).sum(1).mean()


def gan_step(parts: GanParts, real_batches: list[tuple[torch.Tensor, torch.Tensor]], step: int) -> torch.Tensor:
    """``len(real_batches)`` discriminator updates, then one generator update.

    Returns the stats named by STAT_KEYS as one detached tensor; ``skipped`` counts updates refused because a
    loss or gradient was not finite.
    """
    skipped = 0
    G, D, tc = parts.G, parts.D, parts.train_cfg
    fake = y_fake = None
    D.requires_grad_(True)
    for real, y_real in real_batches:
        real = real.to(parts.device, non_blocking=True)
        if real.dim() == 4:
            real = real.contiguous(memory_format=parts.memory_format)
        y_real = y_real.to(parts.device) if parts.conditional else None
        z, y_fake = _latents(parts, real.shape[0])
        with _autocast(parts):
            if tc.reuse_fake:
                fake = G(z, y_fake)
                fake_for_d = fake.detach()
            else:
                with torch.no_grad():
                    fake_for_d = G(z, y_fake)
            pk = parts.model_cfg.pack
            real_in = pack_samples(real, pk)
            if tc.r1_gamma > 0:
                real_in = real_in.detach().requires_grad_(True)
            real_logits = D(real_in, y_real).float()
            fake_logits = D(pack_samples(fake_for_d, pk), y_fake).float()
        loss_real, loss_fake = d_loss(real_logits, fake_logits, tc.loss, tc.real_label)
        loss_d = loss_real + loss_fake
        if tc.r1_gamma > 0:
            loss_d = loss_d + tc.r1_gamma / 2 * r1_penalty(real_logits, real_in)
        skipped += not _update(parts, loss_d, D, parts.opt_d, parts.scaler_d)

    D.requires_grad_(False)  # the G step needs gradients through D, not for D's weights
    with _autocast(parts):
        if fake is None:
            z, y_fake = _latents(parts, real_batches[-1][0].shape[0])
            fake = G(z, y_fake)
        logits = D(pack_samples(fake, parts.model_cfg.pack), y_fake).float()
    loss_g = g_loss(logits, tc.loss)
    g_ok = _update(parts, loss_g, G, parts.opt_g, parts.scaler_g)
    skipped += not g_ok
    D.requires_grad_(True)
    if parts.ema is not None and g_ok:
        parts.ema.update(G, step)

    with torch.no_grad():
        return torch.stack([
            loss_d.detach(), loss_g.detach(), loss_real.detach(), loss_fake.detach(),
            torch.sigmoid(real_logits.detach()).mean(), torch.sigmoid(fake_logits.detach()).mean(),
            torch.tensor(float(skipped), device=loss_d.device),
        ]).float()
