"""Instance noise (Sønderby et al. 2016; Arjovsky & Bottou 2017).

Gaussian noise added to every input D sees (real and fake) makes the two distributions overlap, so D's optimum
and G's gradient stay informative even when the supports are disjoint; annealing it to 0 recovers the original
objective. The schedule is a pure function of the step, so a resumed run gets exactly the same sigmas.
"""
from __future__ import annotations

from typing import Optional

import torch


def instance_noise_sigma(step: int, total_steps: int, sigma0: float, anneal_steps: Optional[int] = None) -> float:
    """sigma0 at step 0, linearly down to 0 at ``anneal_steps`` (default ``total_steps``), 0 afterwards."""
    if sigma0 < 0 or step < 0:
        raise ValueError(f"sigma0 and step must be >= 0, got {sigma0}, {step}")
    horizon = total_steps if anneal_steps is None else anneal_steps
    if horizon <= 0:
        return 0.0
    return sigma0 * max(0.0, 1.0 - step / horizon)


def add_instance_noise(x: torch.Tensor, sigma: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """x + sigma * N(0, 1), drawn on x's device (``generator`` must live there); sigma 0 returns ``x`` itself."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return x
    return x + sigma * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
