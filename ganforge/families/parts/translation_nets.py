"""Networks of the image-to-image families (Isola et al. 2017, Zhu et al. 2017); registers no family itself.

- ``UNetGenerator``: encoder 4x4 stride-2 convs down to 1x1 (so its depth follows the image size: 8 levels at
  256 px, 5 at 32 px), decoder of transposed convs, each decoder level concatenated with its mirror encoder level
  (the skips); widths w, 2w, 4w, 8w, 8w, ...; dropout 0.5 in the three decoder levels after the bottleneck, which is
  the generator's only noise (no z), as in pix2pix.
- ``PatchDiscriminator``: ``n_layers`` 4x4 stride-2 convs (w, 2w, 4w, 8w capped), one stride-1 conv, a 1-channel
  4x4 conv: one logit per patch. 3 layers see 70x70-pixel patches.
- ``ResnetGenerator``: 7x7 reflection-padded conv, ``downsample`` stride-2 convs (two in the paper), ``blocks``
  residual blocks (reflection padding), as many transposed-conv upsamplings, 7x7 conv, tanh.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

Norm = Literal["batch", "instance"]


def norm_layer(kind: Norm, channels: int) -> nn.Module:
    """BatchNorm (affine, tracked), or InstanceNorm without affine parameters or running statistics (pix2pix and
    CycleGAN's own defaults)."""
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.InstanceNorm2d(channels)


def unet_depth(image_size: int) -> int:
    """Stride-2 levels from ``image_size`` down to 1x1."""
    return int(math.log2(image_size))


class UNetGenerator(nn.Module):
    def __init__(self, channels: int, image_size: int, width: int = 64, norm: Norm = "batch",
                 dropout: float = 0.5):
        super().__init__()
        depth = unet_depth(image_size)
        widths = [width * min(2 ** i, 8) for i in range(depth)]  # encoder outputs: w, 2w, 4w, 8w, 8w, ...
        bias = norm == "instance"  # BatchNorm has its own shift
        self.down = nn.ModuleList()
        c_in = channels
        for i, w in enumerate(widths):
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2, True)]
            layers.append(nn.Conv2d(c_in, w, 4, 2, 1, bias=bias or i == 0 or i == depth - 1))
            if 0 < i < depth - 1:  # neither the outermost nor the bottleneck level is normalised
                layers.append(norm_layer(norm, w))
            self.down.append(nn.Sequential(*layers))
            c_in = w
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):  # the decoder level that mirrors encoder level i
            c_in = widths[i] if i == depth - 1 else 2 * widths[i]  # the bottleneck has no skip to join
            out = channels if i == 0 else widths[i - 1]
            layers = [nn.ReLU(True), nn.ConvTranspose2d(c_in, out, 4, 2, 1, bias=bias or i == 0)]
            if i == 0:
                layers.append(nn.Tanh())
            else:
                layers.append(norm_layer(norm, out))
                if dropout > 0 and max(1, depth - 4) <= i <= depth - 2:  # the 3 levels after the bottleneck
                    layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.up[0](skips.pop())
        for block in self.up[1:]:
            x = block(torch.cat([x, skips.pop()], dim=1))
        return x


class PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int, width: int = 64, n_layers: int = 3, norm: Norm = "batch"):
        super().__init__()
        bias = norm == "instance"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c = width
        for i in range(1, n_layers + 1):
            out = width * min(2 ** i, 8)
            stride = 2 if i < n_layers else 1  # the last one keeps the size (the 70x70 receptive field)
            layers += [nn.Conv2d(c, out, 4, stride, 1, bias=bias), norm_layer(norm, out), nn.LeakyReLU(0.2, True)]
            c = out
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, h, w) patch logits."""
        return self.net(x)


class ResnetBlock(nn.Module):
    def __init__(self, c: int, norm: Norm):
        super().__init__()
        bias = norm == "instance"
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3, bias=bias), norm_layer(norm, c),
                                  nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3, bias=bias),
                                  norm_layer(norm, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    def __init__(self, channels: int, width: int = 64, blocks: int = 9, norm: Norm = "instance",
                 downsample: int = 2):
        super().__init__()
        bias = norm == "instance"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels, width, 7, bias=bias),
                                   norm_layer(norm, width), nn.ReLU(True)]
        c = width
        for _ in range(downsample):
            layers += [nn.Conv2d(c, 2 * c, 3, 2, 1, bias=bias), norm_layer(norm, 2 * c), nn.ReLU(True)]
            c *= 2
        layers += [ResnetBlock(c, norm) for _ in range(blocks)]
        for _ in range(downsample):
            layers += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1, bias=bias),
                       norm_layer(norm, c // 2), nn.ReLU(True)]
            c //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
