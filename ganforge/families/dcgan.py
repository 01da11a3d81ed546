"""DCGAN (Radford et al. 2016) for any power-of-two size from 16 to 256.

Sizes follow the seeds: with ``g_input='convt'`` and ``d_output='conv'`` it is the PyTorch/CelebA tutorial
network (64x64: ngf*8 at 4x4 ... ngf at 32x32); with ``'linear'`` it is the SVHN notebook (a Linear layer to and
from the 4x4 map, conv_dim=32 at 32x32). Each upsampling halves the channels, each downsampling doubles them.
D returns logits: the sigmoid lives in the loss (BCE-with-logits, the stable form the seeds recommend).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from ganforge.config_base import DiscriminatorTricks, ModelBase, check_power_of_two
from ganforge.families import GAN_KEYS, Family, register
from ganforge.families.parts.layers import MinibatchDiscrimination, MinibatchStdDev, apply_spectral_norm, blocks_from


class DcganConfig(DiscriminatorTricks, ModelBase):
    """DCGAN: transposed-conv generator, strided-conv discriminator."""

    family: Literal["dcgan"] = "dcgan"
    g_input: Literal["convt", "linear"] = "convt"  # z -> 4x4 by a 4x4 transposed conv (PyTorch DCGAN) or a Linear (SVHN notebook)
    d_output: Literal["conv", "linear"] = "conv"  # 4x4 -> logit by a 4x4 conv (PyTorch DCGAN) or a Linear (SVHN notebook)
    bias: bool = False  # conv biases (redundant before BatchNorm, the seeds switch them off)
    pack: int = Field(1, ge=1, le=8)  # PacGAN: D judges `pack` samples at once (joined along channels); fights mode collapse

    @model_validator(mode="after")
    def _size(self) -> "DcganConfig":
        check_power_of_two(self.image_size, self.family)
        return self


def n_resamples(image_size: int) -> int:
    """Number of 2x steps between the 4x4 base map and the image."""
    return int(math.log2(image_size)) - 2


def up_block(c_in: int, c_out: int, batch_norm: bool, bias: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias or not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU(inplace=True))
    return layers


def upsampling_body(c: int, n: int, cfg: ModelBase) -> nn.Sequential:
    """From the 4x4 map with ``c`` channels to the image: ``n - 1`` up blocks halving channels, then tanh."""
    body: list[nn.Module] = []
    for _ in range(n - 1):
        body += up_block(c, c // 2, cfg.batch_norm, cfg.bias)
        c //= 2
    body += [nn.ConvTranspose2d(c, cfg.channels, 4, 2, 1, bias=cfg.bias), nn.Tanh()]
    return nn.Sequential(*body)


def down_block(c_in: int, c_out: int, batch_norm: bool, bias: bool) -> list[nn.Module]:
    """Strided 4x4 conv (halves the size) [+ BatchNorm] + LeakyReLU(0.2); ``bias`` is taken as given."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=bias)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


def doubling_blocks(c: int, n: int, cfg) -> tuple[list[nn.Module], int]:
    """D's ``n`` strided blocks after its input layer, doubling the channels from ``c``; and the channels at the
    end (shared by the DCGAN and conditional discriminators)."""
    layers: list[nn.Module] = []
    for _ in range(n):
        layers += down_block(c, c * 2, cfg.d_bn, cfg.bias or not cfg.d_bn)
        c *= 2
    return layers, c


class DCGANGenerator(nn.Module):
    def __init__(self, cfg: DcganConfig):
        super().__init__()
        n = n_resamples(cfg.image_size)
        c = cfg.g_width * 2 ** (n - 1)
        self.base_channels = c
        if cfg.g_input == "linear":
            # SVHN notebook: fc -> view(4x4), no norm or activation before the first transposed conv
            self.project = nn.Linear(cfg.z_dim, c * 16)
            self.stem = nn.Identity()
        else:
            self.project = None
            stem: list[nn.Module] = [nn.ConvTranspose2d(cfg.z_dim, c, 4, 1, 0, bias=cfg.bias or not cfg.batch_norm)]
            if cfg.batch_norm:
                stem.append(nn.BatchNorm2d(c))
            stem.append(nn.ReLU(inplace=True))
            self.stem = nn.Sequential(*stem)
        self.body = upsampling_body(c, n, cfg)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.project is not None:
            x = self.project(z).view(z.shape[0], self.base_channels, 4, 4)
        else:
            x = self.stem(z.view(z.shape[0], -1, 1, 1))
        return self.body(x)


class DCGANDiscriminator(nn.Module):
    def __init__(self, cfg: DcganConfig):
        super().__init__()
        n = n_resamples(cfg.image_size)
        c = cfg.d_width
        # no BatchNorm on D's input layer; PacGAN packs `pack` images along the channels
        first = down_block(cfg.channels * cfg.pack, c, batch_norm=False, bias=cfg.bias)
        layers, c = doubling_blocks(c, n - 1, cfg)
        self.features = nn.Sequential(*first, *layers)
        self.head = conv_head(c, cfg)

    def d_blocks(self) -> list[nn.Module]:
        """D's blocks from the image side, for train.freeze_d (FreezeD): one per strided conv; the head stays trainable."""
        return blocks_from(self.features, (nn.Conv2d,))

    def forward_with_features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the 4x4 feature map flattened (feature matching, semi-supervised heads)."""
        h = self.features(x)
        return self.head(h).reshape(-1), h.flatten(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x)).reshape(-1)


def conv_head(c: int, cfg, outputs: int = 1) -> nn.Module:
    """From D's 4x4 map with ``c`` channels to ``outputs`` logits per sample, with the optional add-ons between."""
    pre: list[nn.Module] = []
    if getattr(cfg, "minibatch_std", False):
        pre.append(MinibatchStdDev())
        c += 1
    kernels = getattr(cfg, "minibatch_disc", 0)
    if kernels:
        return nn.Sequential(*pre, nn.Flatten(), MinibatchDiscrimination(c * 16, kernels),
                             nn.Linear(c * 16 + kernels, outputs))
    if getattr(cfg, "d_output", "conv") == "linear":
        return nn.Sequential(*pre, nn.Flatten(), nn.Linear(c * 16, outputs))
    conv = nn.Conv2d(c, outputs, 4, 1, 0, bias=getattr(cfg, "bias", False))
    return nn.Sequential(*pre, conv) if pre else conv


def spectral_norm_discriminators(cfg, nets: dict[str, nn.Module]) -> None:
    """After initialisation: spectral normalisation on every discriminator when the config asks for it."""
    if getattr(cfg, "spectral_norm", False):
        for name, net in nets.items():
            if name.startswith("D"):
                apply_spectral_norm(net)


def gan_networks(generator: type[nn.Module], discriminator: type[nn.Module]):
    """The builder of a G/D family: {"G": generator(cfg), "D": discriminator(cfg)}."""
    return lambda cfg: {"G": generator(cfg), "D": discriminator(cfg)}


register(Family("dcgan", DcganConfig, gan_networks(DCGANGenerator, DCGANDiscriminator),
                "ganforge.families.noise_to_image:GanTrainer", train_keys=GAN_KEYS,
                after_init=spectral_norm_discriminators,
                batch_multiple=lambda cfg: cfg.pack))
