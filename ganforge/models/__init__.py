"""Model families and the registry that maps ``model.family`` to builders.

A new family is a new module in this package that calls ``register(...)`` at import time; ``build_models``
imports the module named after the family (convention, as in junyanz's CycleGAN ``models/__init__.py``).
Every generator has the signature ``G(z, y=None)`` and every discriminator ``D(x, y=None)`` returning logits,
so one training step serves unconditional and conditional families alike.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ganforge.config import ModelConfig


@dataclass(frozen=True)
class Family:
    name: str
    build_generator: Callable[[ModelConfig], nn.Module]
    build_discriminator: Callable[[ModelConfig], nn.Module]
    conditional: bool = False  # G and D take class labels
    convolutional: bool = True  # channels_last helps


_REGISTRY: dict[str, Family] = {}
_MODULE_OF = {"mlp": "mlp", "dcgan": "dcgan", "cdcgan": "conditional"}


def register(family: Family) -> Family:
    _REGISTRY[family.name] = family
    return family


def get_family(name: str) -> Family:
    if name not in _REGISTRY:
        importlib.import_module(f"ganforge.models.{_MODULE_OF.get(name, name)}")
    return _REGISTRY[name]


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """DCGAN initialisation: conv/linear weights ~ N(0, std), BatchNorm gamma ~ N(1, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def build_models(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """Generator and discriminator of ``cfg.family``, initialised."""
    fam = get_family(cfg.family)
    g, d = fam.build_generator(cfg), fam.build_discriminator(cfg)
    init_weights(g, cfg.init_std)
    init_weights(d, cfg.init_std)
    return g, d


def pack_samples(x: torch.Tensor, pack: int) -> torch.Tensor:
    """PacGAN packing: (N, C, ...) -> (N/pack, pack*C, ...), consecutive samples joined along dim 1."""
    if pack == 1:
        return x
    return x.reshape(x.shape[0] // pack, pack * x.shape[1], *x.shape[2:])


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def sample_z(n: int, cfg: ModelConfig, device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> torch.Tensor:
    """Latent vectors (n, z_dim): N(0, 1) or U(-1, 1) as the config says."""
    if cfg.z_dist == "uniform":
        return torch.rand(n, cfg.z_dim, device=device, generator=generator) * 2 - 1
    return torch.randn(n, cfg.z_dim, device=device, generator=generator)
