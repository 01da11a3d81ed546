"""(placeholder until the tricks branch lands) Discriminator add-ons."""
from __future__ import annotations

import torch
from torch import nn


class MinibatchStdDev(nn.Module):
    def __init__(self, group_size: int = 4, num_features: int = 1):
        super().__init__()
        self.group_size, self.num_features = group_size, num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        while n % g:
            g -= 1
        y = x.reshape(g, -1, self.num_features, c // self.num_features, h, w)
        y = (y - y.mean(0)).pow(2).mean(0).add(1e-8).sqrt().mean(dim=(2, 3, 4))
        y = y.reshape(-1, self.num_features, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class MinibatchDiscrimination(nn.Module):
    def __init__(self, in_features: int, num_kernels: int = 50, kernel_dim: int = 5):
        super().__init__()
        self.B, self.C = num_kernels, kernel_dim
        self.T = nn.Parameter(torch.randn(in_features, num_kernels * kernel_dim) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = (x @ self.T).view(-1, self.B, self.C)
        d = (m.unsqueeze(0) - m.unsqueeze(1)).abs().sum(3)
        o = torch.exp(-d).sum(0) - 1
        return torch.cat([x, o], dim=1)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.utils.parametrizations.spectral_norm(m)
    return module
