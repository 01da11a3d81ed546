"""One adversarial update for the noise-to-image families (mlp, dcgan, cdcgan).

D step(s) then a G step, with separate real and fake batches through D (the seeds' way; it matters with
BatchNorm). Cheap by construction: fakes for D are made under no_grad (or reused with ``reuse_fake``), D's
weights don't collect gradients during the G step, and gradients are freed with ``set_to_none``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ganforge.config import ModelConfig, TrainConfig
from ganforge.losses import d_loss, g_loss
from ganforge.models import pack_samples, sample_z
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


def _fake_labels(parts: GanParts, n: int) -> Optional[torch.Tensor]:
    if not parts.conditional:
        return None
    return torch.randint(0, parts.model_cfg.num_classes, (n,), device=parts.device)


STAT_KEYS = ("loss_d", "loss_g", "loss_d_real", "loss_d_fake", "d_real", "d_fake", "skipped")


def _finite_update(loss: torch.Tensor, model: nn.Module, opt: torch.optim.Optimizer) -> bool:
    """Step ``opt`` only when the loss and every gradient are finite: a NaN never reaches the weights."""
    if bool(torch.isfinite(loss)) and grads_finite(model.parameters()):
        opt.step()
        return True
    opt.zero_grad(set_to_none=True)
    return False


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
        n = real.shape[0]
        z = sample_z(n, parts.model_cfg, parts.device)
        y_fake = _fake_labels(parts, n)
        if tc.reuse_fake:
            fake = G(z, y_fake)
            fake_for_d = fake.detach()
        else:
            with torch.no_grad():
                fake_for_d = G(z, y_fake)
        pk = parts.model_cfg.pack
        real_logits = D(pack_samples(real, pk), y_real)
        fake_logits = D(pack_samples(fake_for_d, pk), y_fake)
        loss_real, loss_fake = d_loss(real_logits, fake_logits, tc.loss, tc.real_label)
        loss_d = loss_real + loss_fake
        parts.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        skipped += not _finite_update(loss_d, D, parts.opt_d)

    D.requires_grad_(False)  # the G step needs gradients through D, not for D's weights
    if fake is None:
        n = real_batches[-1][0].shape[0]
        z = sample_z(n, parts.model_cfg, parts.device)
        y_fake = _fake_labels(parts, n)
        fake = G(z, y_fake)
    loss_g = g_loss(D(pack_samples(fake, parts.model_cfg.pack), y_fake), tc.loss)
    parts.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    g_ok = _finite_update(loss_g, G, parts.opt_g)
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
