"""The seeds' fully connected GAN (Udacity MNIST notebook), with the BatchNorm comparison as a switch.

G: z -> h -> 2h -> 4h -> out (LeakyReLU 0.2, dropout 0.3, tanh); D: in -> 4h -> 2h -> h -> 1 logit.
With ``batch_norm`` the hidden Linear layers lose their bias and get BatchNorm1d (never on D's input layer).
"""
from __future__ import annotations

import math
from typing import Literal, Optional

import torch
from pydantic import Field, model_validator
from torch import nn

from ganforge.config_base import DiscriminatorTricks, ModelBase
from ganforge.families import GAN_KEYS, Family, register
from ganforge.families.dcgan import gan_networks, spectral_norm_discriminators
from ganforge.families.parts.layers import MinibatchDiscrimination, blocks_from


class MlpConfig(DiscriminatorTricks, ModelBase):
    """Fully connected G and D, on images (any size) or on points (``point_dim``)."""

    family: Literal["mlp"] = "mlp"
    dropout: float = Field(0.3, ge=0.0, lt=1.0)  # after every hidden layer of G and D, as in the seeds' notebook
    point_dim: Optional[int] = Field(None, ge=1)  # vectors (2D synthetic sets) instead of images
    pack: int = Field(1, ge=1, le=8)  # PacGAN: D judges `pack` samples at once; fights mode collapse

    @model_validator(mode="after")
    def _size(self) -> "MlpConfig":
        if self.point_dim is None and self.image_size < 4:
            raise ValueError(f"image_size={self.image_size} is too small")
        if self.minibatch_std:
            raise ValueError("minibatch_std is for convolutional discriminators: use minibatch_disc with mlp")
        return self


def _out_shape(cfg: MlpConfig) -> tuple[int, ...]:
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
    def __init__(self, cfg: MlpConfig):
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
    def __init__(self, cfg: MlpConfig):
        super().__init__()
        h = cfg.d_width
        widths = [math.prod(_out_shape(cfg)) * cfg.pack, h * 4, h * 2, h]  # PacGAN: pack samples side by side
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers += _hidden(a, b, cfg.d_bn and i > 0, cfg.dropout)
        if cfg.minibatch_disc:
            layers.append(MinibatchDiscrimination(h, cfg.minibatch_disc))
            h += cfg.minibatch_disc
        layers.append(nn.Linear(h, 1))
        self.net = nn.Sequential(*layers)

    def d_blocks(self) -> list[nn.Module]:
        """D's blocks from the image side, for train.freeze_d (FreezeD): the hidden layers; minibatch discrimination and
        the head stay trainable."""
        return blocks_from([m for m in self.net[:-1] if not isinstance(m, MinibatchDiscrimination)], (nn.Linear,))

    def forward_with_features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the last hidden layer's activations (feature matching)."""
        h = self.net[:-1](x.reshape(x.shape[0], -1))
        return self.net[-1](h).view(-1), h

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1)).view(-1)


register(Family("mlp", MlpConfig, gan_networks(MLPGenerator, MLPDiscriminator), "ganforge.families.noise_to_image:GanTrainer",
                train_keys=GAN_KEYS, convolutional=False, after_init=spectral_norm_discriminators,
                draws=lambda cfg: "points" if cfg.point_dim is not None else "images",
                batch_multiple=lambda cfg: cfg.pack))
