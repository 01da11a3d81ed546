"""The small conv encoder behind the offline extractors (``random-conv``, ``random-conv-x4``, ``ssl-conv``).

Any image (1 or 3 channels, any size >= 8 px) is brought to 3 channels at a fixed side (32 px, or 64 px for
images over 48 px), then four stages of conv 3x3 + ReLU (+ BatchNorm when trained) + 2x2 average pooling. The
features are multi-scale: the input itself average-pooled to 4x4 (colour and layout), then the global average of
every stage (edges, textures, parts), each block divided by the square root of its width, so that every scale
weighs alike in a Fréchet distance and no block drowns the others (all times ``SCALE``, for readable numbers).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

WIDTHS = (32, 64, 128, 256)
LAYOUT = 4  # the input pooled to LAYOUT x LAYOUT: 3 * 16 = 48 features of colour and layout
SCALE = 100.0  # all features times this: Fréchet distances then read in the usual tens, not thousandths


def side_for(height: int, width: int) -> int:
    """The encoder's input side: 32 px for small images (the usual GAN sizes), 64 px above 48 px."""
    return 32 if min(height, width) <= 48 else 64


def to_rgb_side(images: torch.Tensor, side: int) -> torch.Tensor:
    """Float (N, 1|3, H, W) in [-1, 1] -> (N, 3, side, side): grey repeated, antialiased bilinear resize."""
    c = images.shape[1]
    if c not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got {c}")
    x = images.float().clamp(-1.0, 1.0)
    if c == 1:
        x = x.expand(-1, 3, -1, -1)
    if tuple(x.shape[-2:]) != (side, side):
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    return x.contiguous()


class ConvEncoder(nn.Module):
    """Four stages of conv 3x3 (+ BatchNorm when ``norm``) + ReLU + 2x2 average pooling.

    ``seed`` fixes the initial weights (the whole of ``random-conv``), drawn from a private generator so the
    caller's RNG is untouched.
    """

    def __init__(self, widths: Sequence[int] = WIDTHS, seed: int = 0, norm: bool = False, kernel: int = 3) -> None:
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        stages, cin = [], 3
        for w in self.widths:
            layers: list[nn.Module] = [nn.Conv2d(cin, w, kernel, padding=kernel // 2, bias=not norm)]
            if norm:
                layers.append(nn.BatchNorm2d(w))
            layers += [nn.ReLU(inplace=True), nn.AvgPool2d(2)]
            stages.append(nn.Sequential(*layers))
            cin = w
        self.stages = nn.ModuleList(stages)
        self._init(seed)

    @torch.no_grad()
    def _init(self, seed: int) -> None:
        gen = torch.Generator().manual_seed(int(seed))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))  # He init
                if m.bias is not None:
                    m.bias.zero_()

    @property
    def feature_dim(self) -> int:
        return 3 * LAYOUT * LAYOUT + sum(self.widths)

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) prepared images -> (N, feature_dim) multi-scale pooled features."""
        blocks = [F.adaptive_avg_pool2d(x, LAYOUT).flatten(1) / math.sqrt(3 * LAYOUT * LAYOUT)]
        for out in self.stage_outputs(x):
            blocks.append(out.mean(dim=(2, 3)) / math.sqrt(out.shape[1]))
        return torch.cat(blocks, dim=1) * SCALE

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's global average: what a contrastive head is trained on."""
        return self.stage_outputs(x)[-1].mean(dim=(2, 3))


class EncoderExtractor:
    """A ``FeatureExtractor`` over one or more ``ConvEncoder`` (features concatenated); no class head."""

    num_classes: Optional[int] = None

    def __init__(self, name: str, encoders: Sequence[ConvEncoder], device="cpu", batch_size: int = 256,
                 side: Optional[int] = None) -> None:
        self.name = name
        self.device = torch.device(device)
        self.encoders = [e.to(self.device).eval().requires_grad_(False) for e in encoders]
        self.batch_size = int(batch_size)
        self.side = side  # None: chosen from each batch's size (side_for)
        self.feature_dim = 3 * LAYOUT * LAYOUT * len(self.encoders) + sum(sum(e.widths) for e in self.encoders)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, Optional[torch.Tensor]]:
        from ganforge.metrics.extractors.base import check_images

        check_images(images)
        side = self.side or side_for(*images.shape[-2:])
        out = []
        for i in range(0, images.shape[0], self.batch_size):
            x = to_rgb_side(images[i:i + self.batch_size], side).to(self.device)
            out.append(torch.cat([e.features(x) for e in self.encoders], dim=1).float().cpu())
        feats = torch.cat(out) if out else torch.empty(0, self.feature_dim)
        return {"features": feats, "logits": None}
