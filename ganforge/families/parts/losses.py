"""Adversarial losses and discriminator regularisers as small functions of logits and inputs.

Losses (``LOSSES``; ``d_loss`` returns D's loss split as (on real, on fake), the total being their sum):

- ``minimax``: Goodfellow et al. 2014 as written: D's BCE, and G minimises E[log(1 - D(G(z)))], which
  saturates (vanishing gradient) while D confidently rejects the fakes. Kept as the textbook baseline.
- ``bce`` (alias ``nonsaturating``): the seeds' loss; same D BCE, G minimises -log D(G(z)) instead (the
  "flipped labels" trick from the same paper): same fixed point, strong gradients early on.
- ``lsgan``: least squares (Mao et al. 2017, used by CycleGAN).
- ``wgan`` / ``wgan-gp``: the Wasserstein critic loss (Arjovsky et al. 2017; Gulrajani et al. 2017). Both
  share the loss; they differ in how the critic is kept Lipschitz (weight clipping vs ``gradient_penalty``),
  which is the engine's business.
- ``hinge``: the SNGAN/BigGAN hinge loss (Lim & Ye 2017; Miyato et al. 2018).

One-sided label smoothing (``real_label``, e.g. 0.9; Salimans et al. 2016) applies to the losses with a real
target (bce, minimax, lsgan) and is ignored by wgan/wgan-gp/hinge, which have none.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

LOSSES = ("minimax", "bce", "lsgan", "wgan", "wgan-gp", "hinge")
ALIASES = {"nonsaturating": "bce"}
_SMOOTHED = ("minimax", "bce", "lsgan")  # the losses that have a real-label target to smooth


def canonical_loss(name: str) -> str:
    """The ``LOSSES`` entry for ``name`` (aliases resolved); a ValueError naming the choices otherwise."""
    kind = ALIASES.get(name, name)
    if kind not in LOSSES:
        choices = ", ".join(LOSSES + tuple(ALIASES))
        raise ValueError(f"unknown loss {name!r}; choose one of: {choices}")
    return kind


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "bce",
           real_label: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator (critic) loss split as (on real, on fake); the total is their sum.

    ``real_label`` is one-sided label smoothing for bce/minimax/lsgan only (see the module docstring).
    """
    kind = canonical_loss(kind)
    if kind in ("bce", "minimax"):
        real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
        fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    elif kind == "lsgan":
        real = 0.5 * (real_logits - real_label).pow(2).mean()
        fake = 0.5 * fake_logits.pow(2).mean()
    elif kind in ("wgan", "wgan-gp"):
        real = -real_logits.mean()  # critic loss mean(fake) - mean(real)
        fake = fake_logits.mean()
    else:  # hinge
        real = F.relu(1.0 - real_logits).mean()
        fake = F.relu(1.0 + fake_logits).mean()
    return real, fake


def g_loss(fake_logits: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """Generator loss on D's logits for fakes."""
    kind = canonical_loss(kind)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))  # -log D(G(z))
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()  # log(1 - sigmoid(l)) = -softplus(l)
    if kind == "lsgan":
        return 0.5 * (fake_logits - 1.0).pow(2).mean()
    return -fake_logits.mean()  # wgan, wgan-gp, hinge


def _input_grad(logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """d(sum of logits)/d(inputs) per sample, flattened to float32; graph kept so a penalty on it trains D."""
    (grad,) = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    return grad.float().reshape(grad.shape[0], -1)


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     target: float = 1.0, generator: Optional[torch.Generator] = None,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """WGAN-GP (Gulrajani et al. 2017): mean((||grad_x critic(x)||_2 - target)^2) on x = eps*real + (1-eps)*fake.

    The optimal critic has unit-norm gradients on the lines between data and generated samples, so the penalty
    enforces 1-Lipschitzness only where it matters (softly; weight clipping in WGAN cripples the critic).
    eps ~ U(0, 1) per sample, drawn on ``real``'s device (``generator`` must live there). ``real`` and ``fake``
    are detached: the penalty trains the critic only. ``critic`` maps a batch to logits (e.g.
    ``lambda x: D(x, y)``). Returns (penalty with its graph, mean gradient norm detached, for logging).
    """
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, device=real.device, dtype=real.dtype, generator=generator)
    x = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    norm = _input_grad(critic(x), x).norm(2, dim=1)
    return (norm - target).pow(2).mean(), norm.mean().detach()


def r1_penalty(real_logits: torch.Tensor, real_in: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 on real inputs (Mescheder et al. 2018): keeps D flat on the data, so training settles
    on it instead of circling; graph kept so D's update differentiates through it. The usual weight is gamma/2."""
    return _input_grad(real_logits, real_in).pow(2).sum(1).mean()


def lazy_weight(gamma: float, every: int) -> float:
    """Weight of a penalty applied only every ``every`` D steps: gamma * every (lazy regularisation, Karras et
    al. 2020, StyleGAN2), so its average strength matches applying gamma each step at a fraction of the cost."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    return gamma * every


def drift_penalty(real_logits: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """eps * E[D(x)^2] on reals (Karras et al. 2018, ProGAN): keeps a WGAN critic's output from drifting far
    from zero, which its loss alone does not prevent."""
    return eps * real_logits.float().pow(2).mean()


def feature_matching_loss(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """|| E[f(x)] - E[f(G(z))] ||_2^2 over the batch (Salimans et al. 2016): G matches the statistics of an
    intermediate D layer instead of maximising D's output, which is harder to overtrain against. Real features are
    detached (they are the target); features of any shape are flattened per sample."""
    real = real_features.detach().float().flatten(1).mean(0)
    fake = fake_features.float().flatten(1).mean(0)
    return (real - fake).pow(2).sum()
