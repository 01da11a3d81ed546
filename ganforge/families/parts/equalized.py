"""Layers of the style-based families (ProGAN, StyleGAN): equalized learning rate and pixelwise normalisation.

Equalized learning rate (Karras et al. 2018): weights are stored ~ N(0, 1) / lr_mul and multiplied at run time by
He's constant ``gain / sqrt(fan_in)`` (gain sqrt 2) times ``lr_mul``, so under Adam, which normalises each
parameter's step, every layer learns at the same speed whatever its fan-in. ``lr_mul`` < 1 slows a layer down
(StyleGAN's mapping network: 0.01). These are not ``nn.Conv2d``/``nn.Linear`` subclasses, so the registry's
N(0, 0.02) initialisation leaves them alone.

Not a model family (the registry imports it and finds nothing to register).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)  # He's gain for (leaky) ReLU layers


class EqualizedLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, lr_mul: float = 1.0,
                 bias_init: float = 0.0, gain: float = SQRT2):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul)) if bias else None
        self.scale = gain / math.sqrt(in_features) * lr_mul  # He's constant, applied at run time
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        return F.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, lr_mul={self.lr_mul:g}"


class EqualizedConv2d(nn.Module):
    """Same-padded conv with equalized learning rate."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 gain: float = SQRT2):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"in={i}, out={o}, kernel={k}"


class PixelNorm(nn.Module):
    """Pixelwise feature vector normalisation (ProGAN): each pixel's feature vector scaled to unit RMS."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def channels_at(res: int, image_size: int, width: int, max_channels: int) -> int:
    """Channels at resolution ``res`` (ProGAN, StyleGAN): ``width`` at the image size, doubled at every halving,
    capped at ``max_channels`` (stylegan2-ada's channel_base = width x image_size, channel_max)."""
    return min(max_channels, width * (image_size // res))


def upscale_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Nearest-neighbour upscaling to ``size`` (a whole multiple of x's side): how a low-resolution stage is shown
    at the final size."""
    factor = size // x.shape[-1]
    return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode="nearest")


def downscale_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Box-filter downscaling (average pooling) to ``size``: real images as a low-resolution stage sees them."""
    factor = x.shape[-1] // size
    return x if factor == 1 else F.avg_pool2d(x, factor)
