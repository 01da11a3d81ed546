"""Exponential moving average of the generator's weights (Karras et al.; Yazici et al. 2019).

Averaging G over the last few hundred steps removes most of the step-to-step jitter of GAN training, which on a
short CPU budget is the difference between smeared and clean digits.

BatchNorm needs care: running statistics copied from G describe G's weights, not the averaged ones, and pairing
them gives noisy, washed-out samples. ``refresh_batchnorm`` re-estimates them for the averaged weights from
fresh latent batches ("standing statistics", as in BigGAN), using its own RNG so training stays reproducible.
"""
from __future__ import annotations

import copy
from typing import Callable, Optional

import torch
from torch import nn

InputMaker = Callable[[int, torch.Generator], tuple]  # (n, generator) -> the generator network's inputs


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class EMA:
    def __init__(self, model: nn.Module, decay: float, start_step: int = 0):
        self.decay = decay
        self.start_step = start_step
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)
        self._refreshed_at: Optional[int] = None

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, decay: Optional[float] = None) -> None:
        """One averaging step; ``decay`` overrides the configured one for this step (a family's schedule)."""
        ema_params = list(self.model.parameters())
        params = [p.detach() for p in model.parameters()]
        if step < self.start_step:
            torch._foreach_copy_(ema_params, params)
        else:
            torch._foreach_lerp_(ema_params, params, 1.0 - (self.decay if decay is None else decay))
        buffers = list(self.model.buffers())
        if buffers:  # one foreach copy, not a kernel per buffer: on a GPU every launch is host time per step
            torch._foreach_copy_(buffers, list(model.buffers()))
        self._refreshed_at = None

    @torch.no_grad()
    def refresh_batchnorm(self, make_inputs: InputMaker, step: int, batches: int = 8, batch_size: int = 256) -> None:
        """Recompute BatchNorm running mean/var of the averaged generator (no-op without BatchNorm), feeding it
        ``batches`` batches of ``make_inputs`` (the family's inputs: latents, labels...)."""
        norms = _batchnorms(self.model)
        if not norms or self._refreshed_at == step:
            return
        gen = torch.Generator().manual_seed(1234 + step)
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the refresh batches
        # only the BatchNorms gather statistics; dropout stays off, as when sampling, and so draws nothing from the
        # training RNG (a checkpoint save must not shift a run's random stream)
        for m in norms:
            m.train()
        for _ in range(batches):
            self.model(*make_inputs(batch_size, gen))
        for m, mom in zip(norms, momenta):
            m.momentum = mom
        self.model.eval()
        self._refreshed_at = step
