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
- ``rpgan``: the relativistic pairing loss (Jolicoeur-Martineau 2019; R3GAN, Huang et al. 2024): D minimises
  softplus(-(D(x_i) - D(G(z_i)))) and G softplus(-(D(G(z_i)) - D(x_i))), real and fake paired per sample. D judges
  how much more real a real sample looks than a fake one, not each on its own, which with R1 + R2 removes the
  mode-dropping fixed points of the classic loss. It does not split into a real and a fake part: ``d_loss`` puts
  all of it in the first ("real") term and 0 in the second, and ``g_loss`` needs the real logits too.

One-sided label smoothing (``real_label``, e.g. 0.9; Salimans et al. 2016) applies to the losses with a real
target (bce, minimax, lsgan) and is ignored by wgan/wgan-gp/hinge, which have none.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

LOSSES = ("minimax", "bce", "lsgan", "wgan", "wgan-gp", "hinge", "rpgan")
RELATIVISTIC = ("rpgan",)  # the losses whose G term needs D's logits on reals too
ALIASES = {"nonsaturating": "bce"}
SMOOTHED = ("minimax", "bce", "lsgan")  # the losses that have a real-label target to smooth
OFFSET_FREE = ("wgan", "wgan-gp", "rpgan")  # D's output may drift by any constant without changing the loss


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
    if kind == "rpgan":
        return F.softplus(-_paired(real_logits, fake_logits)).mean(), torch.zeros_like(real_logits.sum())
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


def real_margin(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "bce",
                real_label: float = 1.0) -> torch.Tensor:
    """D's verdict on each real measured from its decision boundary (positive: "real"), detached; ADA's
    overfitting heuristic r_t is its mean sign. bce, minimax and hinge: the logit itself (the paper's
    E[sign(D(x))]); lsgan: from halfway between the fake target 0 and the real one. The critic and
    relativistic losses (``OFFSET_FREE``) only see differences of D's outputs, so their zero drifts freely:
    there the margin is taken from the mean logit on this batch's fakes, else sign(D(x)) reads the drift
    (r_t pinned near 1 or -1 whatever D's overfitting) and ADA pushes p to 1."""
    kind = canonical_loss(kind)
    real_logits = real_logits.detach().float()
    if kind in OFFSET_FREE:
        return real_logits - fake_logits.detach().float().mean()
    if kind == "lsgan":
        return real_logits - real_label / 2
    return real_logits


def _paired(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D(x_i) - D(G(z_i)) sample by sample: the relativistic loss pairs one real with one fake."""
    if real_logits.shape != fake_logits.shape:
        raise ValueError(f"rpgan pairs reals with fakes one to one: got {tuple(real_logits.shape)} real and "
                         f"{tuple(fake_logits.shape)} fake logits")
    return real_logits - fake_logits


def g_loss(fake_logits: torch.Tensor, kind: str = "bce", real_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Generator loss on D's logits for fakes (and, for the relativistic ``rpgan``, on the paired reals: they carry
    no gradient to G, so callers may compute them without a graph)."""
    kind = canonical_loss(kind)
    if kind == "rpgan":
        if real_logits is None:
            raise ValueError("g_loss(kind='rpgan') needs real_logits: the loss is relative to D's view of reals")
        return F.softplus(_paired(real_logits, fake_logits)).mean()  # softplus(-(D(G(z)) - D(x)))
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


def r2_penalty(fake_logits: torch.Tensor, fake_in: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 on generated inputs (R2; Roth et al. 2017, R3GAN): the same zero-centred penalty as R1
    on the fakes, which R3GAN shows RpGAN needs beside R1 to converge locally. ``fake_in`` must be a detached
    leaf that requires grad (the penalty trains D only). Weighted gamma/2 like R1."""
    return _input_grad(fake_logits, fake_in).pow(2).sum(1).mean()


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
