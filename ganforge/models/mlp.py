"""The seeds' fully connected GAN (Udacity MNIST notebook), with the BatchNorm comparison as a switch.

G: z -> h -> 2h -> 4h -> out (LeakyReLU 0.2, dropout 0.3, tanh); D: in -> 4h -> 2h -> h -> 1 logit.
With ``batch_norm`` the hidden Linear layers lose their bias and get BatchNorm1d (never on D's input layer).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ganforge.config import ModelConfig
from ganforge.models import Family, register


def _out_shape(cfg: ModelConfig) -> tuple[int, ...]:
    if cfg.point_dim is not None:
        return (cfg.point_dim,)
    return (cfg.channels, cfg.image_size, cfg.image_size)


def _hidden(n_in: int, n_out: int, batch_norm: bool, dropout: float) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(n_in, n_out, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(n_out))
    layers.append(nn.LeakyReLU(0.2))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


class MLPGenerator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.out_shape = _out_shape(cfg)
        h = cfg.g_width
        widths = [cfg.z_dim, h, h * 2, h * 4]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += _hidden(a, b, cfg.batch_norm, cfg.dropout)
        layers.append(nn.Linear(widths[-1], math.prod(self.out_shape)))
        if cfg.point_dim is None:
            layers.append(nn.Tanh())  # images live in [-1, 1]; points are unbounded
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.out_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h = cfg.d_width
        widths = [math.prod(_out_shape(cfg)) * cfg.pack, h * 4, h * 2, h]  # PacGAN: pack samples side by side
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers += _hidden(a, b, cfg.batch_norm and i > 0, cfg.dropout)
        layers.append(nn.Linear(widths[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1)).view(-1)


register(Family("mlp", MLPGenerator, MLPDiscriminator, conditional=False, convolutional=False))
