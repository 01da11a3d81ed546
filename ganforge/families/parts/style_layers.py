"""The style-based generator's layers (StyleGAN, StyleGAN2), on equalized-LR layers: the mapping network, per-pixel
noise, modulated/demodulated convolution (StyleGAN2), AdaIN (StyleGAN) and the RGB layers. ``families/stylegan.py``
builds its networks from them."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.families.parts.equalized import SQRT2, EqualizedConv2d, EqualizedLinear


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU 0.2 times sqrt 2, so unit-variance inputs keep a unit second moment (StyleGAN2's act gain)."""
    return F.leaky_relu(x, 0.2) * SQRT2


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def upsample(x: torch.Tensor) -> torch.Tensor:
    """2x bilinear: the papers' [1, 3, 3, 1] upsampling filter (edges replicated instead of zero-padded)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class MappingNetwork(nn.Module):
    """z -> w: 2nd-moment normalisation, then ``layers`` equalized FC layers at ``lr_mul``."""

    def __init__(self, z_dim: int, w_dim: int, layers: int, lr_mul: float):
        super().__init__()
        dims = [z_dim] + [w_dim] * layers
        self.fcs = nn.ModuleList(EqualizedLinear(a, b, lr_mul=lr_mul) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = normalize_2nd_moment(z.float())
        for fc in self.fcs:
            x = F.leaky_relu(fc(x), 0.2)  # EqualizedLinear carries He's sqrt 2 gain already
        return x


class NoiseInput(nn.Module):
    """Per-pixel Gaussian noise times a learned strength (starts at 0); a fixed copy for ``noise_mode="const"``."""

    def __init__(self, res: int):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(res, res))

    def forward(self, x: torch.Tensor, noise_mode: str) -> torch.Tensor:
        if noise_mode == "none":
            return x
        if noise_mode == "const":
            noise = self.noise_const.to(x.dtype)
        else:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        return x + noise * self.strength.to(x.dtype)


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated convolution: weights scaled by the style per input channel, optionally demodulated.

    Computed as ``conv(x * s) * d`` with a shared weight (stylegan2-ada's non-fused form: plain convolutions, fast
    on CPUs and cheap to differentiate twice), where d = 1 / ||W * s|| per sample and output channel.
    """

    def __init__(self, c_in: int, c_out: int, w_dim: int, kernel: int, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.affine = EqualizedLinear(w_dim, c_in, bias_init=1.0, gain=1.0)  # styles start at 1
        self.demodulate, self.padding = demodulate, kernel // 2
        self.gain = 1.0 / math.sqrt(c_in * kernel * kernel)  # equalized LR (unused when demodulating)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.affine(w).to(x.dtype)  # (N, c_in)
        weight = self.weight.to(x.dtype)
        if not self.demodulate:
            s = s * self.gain
        x = F.conv2d(x * s[:, :, None, None], weight, padding=self.padding)
        if self.demodulate:
            d = (weight.square().sum(dim=(2, 3)) @ s.square().t() + 1e-8).rsqrt()  # (c_out, N)
            x = x * d.t()[:, :, None, None]
        return x

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"in={i}, out={o}, kernel={k}, demodulate={self.demodulate}"


class ModulatedLayer(nn.Module):
    """StyleGAN2 layer: modulated 3x3 conv, noise, bias, leaky ReLU (upsampling before the conv when ``up``)."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, res: int, up: bool):
        super().__init__()
        self.up = up
        self.conv = ModulatedConv2d(c_in, c_out, w_dim, 3)
        self.noise = NoiseInput(res)
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        if self.up:
            x = upsample(x)
        x = self.noise(self.conv(x, w), noise_mode)
        return lrelu(x + self.bias.to(x.dtype)[:, None, None])


class AdainLayer(nn.Module):
    """StyleGAN layer: [conv 3x3], noise, bias, leaky ReLU, instance norm, then the style's scale and shift."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, res: int, up: bool, conv: bool = True):
        super().__init__()
        self.up = up
        self.conv = EqualizedConv2d(c_in, c_out, 3, bias=False) if conv else None
        self.noise = NoiseInput(res)
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.affine = EqualizedLinear(w_dim, 2 * c_out, gain=1.0)
        with torch.no_grad():
            self.affine.bias[:c_out] = 1.0  # scale starts at 1, shift at 0

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        if self.up:
            x = upsample(x)
        if self.conv is not None:
            x = self.conv(x)
        x = self.noise(x, noise_mode)
        x = F.leaky_relu(x + self.bias.to(x.dtype)[:, None, None], 0.2)
        x = F.instance_norm(x.float()).to(x.dtype)
        scale, shift = self.affine(w).to(x.dtype).chunk(2, dim=1)
        return x * scale[:, :, None, None] + shift[:, :, None, None]


class ToRGB(nn.Module):
    """1x1 conv to the image channels: modulated, not demodulated (StyleGAN2), or plain (StyleGAN)."""

    def __init__(self, c_in: int, channels: int, w_dim: int, styled: bool, outputs: int = 1):
        super().__init__()
        self.conv = ModulatedConv2d(c_in, channels, w_dim, 1, demodulate=False) if styled \
            else EqualizedConv2d(c_in, channels, 1, bias=False, gain=1.0)
        self.bias = nn.Parameter(torch.zeros(channels))
        with torch.no_grad():  # the image (a sum of ``outputs`` of these) starts with std ~0.5, in tanh's linear range
            self.conv.weight.mul_(1.0 / math.sqrt(8 * outputs))

    def forward(self, x: torch.Tensor, w: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.conv(x, w) if isinstance(self.conv, ModulatedConv2d) else self.conv(x)
        return x + self.bias.to(x.dtype)[:, None, None]
