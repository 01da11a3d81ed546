"""The seeds' conditional DCGAN on MNIST (Mirza & Osindero 2014, after znxlwm's cDCGAN).

G: z and the one-hot label each go through a 4x4 transposed conv (half the base channels each), are joined,
then upsampled as in DCGAN. D: the image and the label maps (one-hot planes at full size) each go through a
strided conv (half of ndf each), are joined after that first layer, then downsampled as in DCGAN.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from ganforge.config_base import DiscriminatorTricks, ModelBase, check_power_of_two
from ganforge.families import GAN_KEYS, Family, register
from ganforge.families.parts.layers import blocks_from
from ganforge.families.dcgan import (conv_head, doubling_blocks, down_block, gan_networks, n_resamples,
                                   spectral_norm_discriminators, upsampling_body)


class CdcganConfig(DiscriminatorTricks, ModelBase):
    """Conditional DCGAN: class labels into G and D."""

    family: Literal["cdcgan"] = "cdcgan"
    num_classes: int = Field(10, ge=2)
    bias: bool = False  # conv biases (redundant before BatchNorm)

    @model_validator(mode="after")
    def _size(self) -> "CdcganConfig":
        check_power_of_two(self.image_size, self.family)
        return self


def _stem(c_in: int, c_out: int, batch_norm: bool, bias: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.ConvTranspose2d(c_in, c_out, 4, 1, 0, bias=bias or not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ConditionalGenerator(nn.Module):
    def __init__(self, cfg: CdcganConfig):
        super().__init__()
        self.num_classes = cfg.num_classes
        n = n_resamples(cfg.image_size)
        c = cfg.g_width * 2 ** (n - 1)
        self.z_stem = _stem(cfg.z_dim, c // 2, cfg.batch_norm, cfg.bias)
        self.y_stem = _stem(cfg.num_classes, c // 2, cfg.batch_norm, cfg.bias)
        self.body = upsampling_body(c, n, cfg)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("a conditional generator needs class labels y")
        onehot = F.one_hot(y, self.num_classes).to(z.dtype).view(-1, self.num_classes, 1, 1)
        h = torch.cat([self.z_stem(z.view(z.shape[0], -1, 1, 1)), self.y_stem(onehot)], dim=1)
        return self.body(h)


class ConditionalDiscriminator(nn.Module):
    def __init__(self, cfg: CdcganConfig):
        super().__init__()
        self.num_classes = cfg.num_classes
        n = n_resamples(cfg.image_size)
        c = cfg.d_width
        self.x_stem = nn.Sequential(*down_block(cfg.channels, c // 2, batch_norm=False, bias=cfg.bias))
        self.y_stem = nn.Sequential(*down_block(cfg.num_classes, c // 2, batch_norm=False, bias=cfg.bias))
        layers, c = doubling_blocks(c, n - 1, cfg)
        self.features = nn.Sequential(*layers)
        self.head = conv_head(c, cfg)

    def d_blocks(self) -> list[nn.Module]:
        """D's blocks from the image side, for train.freeze_d (FreezeD): the image and label stems, then one per strided
        conv; the head stays trainable."""
        return [nn.Sequential(self.x_stem, self.y_stem), *blocks_from(self.features, (nn.Conv2d,))]

    def forward_with_features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if y is None:
            raise ValueError("a conditional discriminator needs class labels y")
        planes = F.one_hot(y, self.num_classes).to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        h = self.features(torch.cat([self.x_stem(x), self.y_stem(planes)], dim=1))
        return self.head(h).reshape(-1), h.flatten(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_with_features(x, y)[0]


register(Family("cdcgan", CdcganConfig, gan_networks(ConditionalGenerator, ConditionalDiscriminator),
                "ganforge.families.noise_to_image:GanTrainer", train_keys=GAN_KEYS,
                conditional=True, after_init=spectral_norm_discriminators,
                batch_multiple=lambda cfg: getattr(cfg, "pack", 1)))
