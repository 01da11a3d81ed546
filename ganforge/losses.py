"""Adversarial losses as small functions of discriminator logits.

``bce`` is the seeds' loss: BCE-with-logits, D's real targets optionally smoothed (one-sided, e.g. 0.9), and the
non-saturating generator loss -log D(G(z)) (flipped labels). ``lsgan`` is least squares (Mao et al., used by
CycleGAN); ``hinge`` is the SNGAN/BigGAN hinge loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "bce", real_label: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator loss split as (on real, on fake); the total is their sum, as in the seeds."""
    if kind == "bce":
        real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
        fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    elif kind == "lsgan":
        real = 0.5 * (real_logits - real_label).pow(2).mean()
        fake = 0.5 * fake_logits.pow(2).mean()
    elif kind == "hinge":
        real = F.relu(1.0 - real_logits).mean()
        fake = F.relu(1.0 + fake_logits).mean()
    else:
        raise ValueError(f"unknown loss {kind!r}")
    return real, fake


def g_loss(fake_logits: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """Generator loss on D's logits for fakes (non-saturating for bce)."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    if kind == "lsgan":
        return 0.5 * (fake_logits - 1.0).pow(2).mean()
    if kind == "hinge":
        return -fake_logits.mean()
    raise ValueError(f"unknown loss {kind!r}")


def r1_penalty(real_logits: torch.Tensor, real_in: torch.Tensor) -> torch.Tensor:
    """(temporary) E ||grad_x D(x)||^2 on real inputs (Mescheder et al. 2018)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_in, create_graph=True)
    return grad.float().pow(2).reshape(grad.shape[0], -1).sum(1).mean()


def lazy_weight(gamma: float, every: int) -> float:
    return gamma * every
