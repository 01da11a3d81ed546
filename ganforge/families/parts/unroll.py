"""Unrolled GAN (Metz et al. 2017): G is trained against where D would be after a few more of its own updates.

G's loss goes through D's parameters after ``k`` gradient steps on D's loss, differentiated through those steps
(``create_graph=True``), so G accounts for how D would react and is discouraged from hopping between modes.
Everything is functional (``torch.func.functional_call`` on a dict of tensors): D's own parameters, buffers and
``.grad`` are never touched. Metz et al. unrolled Adam; plain gradient descent is the common simplification used
here (the unrolled steps only need to show G the direction D moves in, not to match D's optimizer).

Usage in a generator step::

    def loss_fn(p):
        d = functional_d(D, p)
        return sum(d_loss(d(real, y), d(fake, y_fake)))  # fake = G(z) NOT detached

    params = unrolled_parameters(D, loss_fn, steps=5, lr=lr_d)
    loss_g = g_loss(functional_d(D, params)(fake, y_fake))
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.func import functional_call


def functional_d(D: nn.Module, params: dict[str, torch.Tensor]) -> Callable[..., torch.Tensor]:
    """D's forward with ``params`` (names as in ``named_parameters``/``named_buffers``) in place of its own."""
    return lambda *args, **kwargs: functional_call(D, params, args, kwargs)


def unrolled_parameters(D: nn.Module, loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor], steps: int,
                        lr: float) -> dict[str, torch.Tensor]:
    """D's parameters after ``steps`` descent steps of size ``lr`` on ``loss_fn(params)``, plus D's buffers.

    The start is a detached copy of D's parameters, so the result is differentiable w.r.t. whatever the loss
    depends on (G's output) but a backward through it leaves D's ``.grad`` alone. Buffers are cloned, because a
    training-mode forward updates them in place (BatchNorm statistics, spectral norm's u/v); D keeps its own.
    Keys follow ``named_parameters``, so parametrized weights (spectral norm) stay parametrized. Every
    parameter is stepped, whatever its ``requires_grad``: during the generator's update D is frozen (its weights
    take no gradient), yet its unrolled copy must move. ``steps=0`` returns D's current values.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    params = {name: p.detach().requires_grad_(True) for name, p in D.named_parameters()}
    buffers = {name: b.clone() for name, b in D.named_buffers()}
    trainable = list(params)
    for _ in range(steps):
        loss = loss_fn({**params, **buffers})
        grads = torch.autograd.grad(loss, [params[n] for n in trainable], create_graph=True, allow_unused=True)
        params = {**params, **{n: params[n] - lr * g for n, g in zip(trainable, grads) if g is not None}}
    return {**params, **buffers}
