"""R3GAN's networks (Huang et al. 2024, "The GAN is dead; long live the GAN!"): a plain modern ConvNet.

Both G and D are stages of residual blocks, each block an inverted bottleneck 1x1 -> grouped 3x3 -> 1x1 (channels
widened by ``expansion`` inside, ``group_channels`` per group in the 3x3), with leaky ReLU 0.2 and a learned bias
after the first two convs and no normalisation layer anywhere. What keeps such a net trainable without BatchNorm is
fix-up initialisation: every block's last conv starts at zero (each block is the identity at first) and the others
are scaled down by L^(-1/4) for L blocks in the net, so the residual sum keeps unit variance as it deepens.
Resampling is a [1,2,1] low-pass filter (the [1,3,3,1] kernel of a 2x step), with a 1x1 conv where the width
changes. G starts from a learned 4x4 basis per channel scaled by a linear map of z (no mapping network, no style
modulation); D ends in a depthwise 4x4 conv and a linear map to one logit.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SLOPE = 0.2
ACT_GAIN = math.sqrt(2.0 / (1.0 + SLOPE ** 2))  # keeps unit variance through a leaky ReLU


def msr_init_(weight: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """N(0, gain^2 / fan_in) in place (He et al.'s "MSR" init); gain 0 zero-initialises."""
    fan_in = weight[0].numel()
    with torch.no_grad():
        return weight.normal_(0.0, gain / math.sqrt(fan_in)) if gain else weight.zero_()


class Conv(nn.Conv2d):
    """A bias-free 'same' conv whose weights carry R3GAN's gain (the bias lives in the next activation)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int = 1, gain: float = 1.0):
        self.gain = gain  # before the base class's __init__, which calls reset_parameters
        super().__init__(c_in, c_out, kernel, padding=(kernel - 1) // 2, groups=groups, bias=False)

    def reset_parameters(self) -> None:
        msr_init_(self.weight, self.gain)


class BiasedLeakyReLU(nn.Module):
    """Per-channel bias, then leaky ReLU 0.2."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias.to(x.dtype).view(1, -1, 1, 1), SLOPE)


class ResidualBlock(nn.Module):
    """x + conv1x1(act(grouped conv3x3(act(conv1x1(x))))), the last conv zero at the start (fix-up)."""

    def __init__(self, channels: int, expansion: int, group_channels: int, total_blocks: int):
        super().__init__()
        wide = channels * expansion
        gain = ACT_GAIN * total_blocks ** (-1.0 / 4.0)  # L^(-1/(2m-2)) for m = 3 convs per branch
        self.expand = Conv(channels, wide, 1, gain=gain)
        self.act1 = BiasedLeakyReLU(wide)
        self.spatial = Conv(wide, wide, 3, groups=group_count(wide, group_channels), gain=gain)
        self.act2 = BiasedLeakyReLU(wide)
        self.project = Conv(wide, channels, 1, gain=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.act2(self.spatial(self.act1(self.expand(x)))))


def group_count(channels: int, group_channels: int) -> int:
    """Groups of about ``group_channels`` each that divide ``channels`` (one group when it is narrower)."""
    groups = max(1, channels // group_channels)
    while channels % groups:
        groups -= 1
    return groups


def lowpass_kernel() -> torch.Tensor:
    """The 4x4 kernel of a [1,2,1]-filtered 2x resampling: the filter convolved with a box of 2, outer product, sum 1."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(taps, taps)
    return k / k.sum()


class Resample(nn.Module):
    """2x up or down with the low-pass kernel, channel by channel, and a 1x1 conv where the width changes (before
    upsampling, after downsampling: at the lower resolution, where it is cheaper)."""

    def __init__(self, c_in: int, c_out: int, up: bool):
        super().__init__()
        self.up = up
        self.register_buffer("kernel", lowpass_kernel()[None, None], persistent=False)
        self.proj = Conv(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up and self.proj is not None:
            x = self.proj(x)
        c = x.shape[1]
        k = self.kernel.to(x.dtype).expand(c, 1, 4, 4)
        if self.up:  # a zero-stuffed 2x image filtered: the kernel times 4 keeps the mean
            x = F.conv_transpose2d(x, 4 * k, stride=2, padding=1, groups=c)
        else:
            x = F.conv2d(x, k, stride=2, padding=1, groups=c)
        if not self.up and self.proj is not None:
            x = self.proj(x)
        return x


def total_blocks(widths: list[int], blocks: int) -> int:
    return len(widths) * blocks


class R3Generator(nn.Module):
    """z -> 4x4 basis scaled per channel by a linear map of z -> stages of blocks, 2x up between -> 1x1 to the image.

    ``widths`` run from the 4x4 stage to the image's; the output is linear, as R3GAN's (the samplers clamp it to
    [-1, 1]), unless ``tanh``."""

    def __init__(self, z_dim: int, widths: list[int], blocks: int, expansion: int, group_channels: int,
                 channels: int, tanh: bool = False):
        super().__init__()
        self.tanh = tanh
        n = total_blocks(widths, blocks)
        self.basis = nn.Parameter(torch.randn(widths[0], 4, 4))
        self.embed = nn.Linear(z_dim, widths[0], bias=False)
        msr_init_(self.embed.weight)
        stages: list[nn.Module] = []
        for i, w in enumerate(widths):
            layers: list[nn.Module] = [Resample(widths[i - 1], w, up=True)] if i else []
            layers += [ResidualBlock(w, expansion, group_channels, n) for _ in range(blocks)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.to_image = Conv(widths[-1], channels, 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = self.basis.to(z.dtype)[None] * self.embed(z.flatten(1))[:, :, None, None]
        for stage in self.stages:
            x = stage(x)
        x = self.to_image(x)
        return torch.tanh(x) if self.tanh else x


class R3Discriminator(nn.Module):
    """Image -> 1x1 to the first width -> stages of blocks, 2x down between -> depthwise 4x4 -> linear -> a logit.

    ``widths`` run from the image's stage down to 4x4 (G's reversed)."""

    def __init__(self, widths: list[int], blocks: int, expansion: int, group_channels: int, channels: int):
        super().__init__()
        n = total_blocks(widths, blocks)
        self.from_image = Conv(channels, widths[0], 1)
        stages: list[nn.Module] = []
        for i, w in enumerate(widths):
            layers: list[nn.Module] = [ResidualBlock(w, expansion, group_channels, n) for _ in range(blocks)]
            if i + 1 < len(widths):
                layers.append(Resample(w, widths[i + 1], up=False))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.basis = Conv(widths[-1], widths[-1], 4, groups=widths[-1])
        self.basis.padding = (0, 0)  # valid: 4x4 -> 1x1
        self.head = nn.Linear(widths[-1], 1, bias=False)
        msr_init_(self.head.weight)

    def d_blocks(self) -> list[nn.Module]:
        """D's stages from the image side (train.freeze_d counts them); the input conv goes with the first."""
        return [nn.ModuleList([self.from_image, self.stages[0]]), *self.stages[1:]]

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.from_image(x)
        for stage in self.stages:
            h = stage(h)
        return self.head(self.basis(h).flatten(1)).reshape(-1)


def reset_r3gan(nets: dict[str, nn.Module]) -> None:
    """R3GAN's init from torch's global RNG, every network in order: fix-up in the blocks, MSR elsewhere, the basis
    ~ N(0, 1). (Modules init themselves when built; this redraws them so the run's seed decides.)"""
    for net in nets.values():
        for m in net.modules():
            if isinstance(m, Conv):
                m.reset_parameters()
            elif isinstance(m, nn.Linear):
                msr_init_(m.weight)
            elif isinstance(m, BiasedLeakyReLU):
                nn.init.zeros_(m.bias)
        if isinstance(net, R3Generator):
            with torch.no_grad():
                net.basis.normal_()
