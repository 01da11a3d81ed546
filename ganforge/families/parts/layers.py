"""Discriminator add-ons against mode collapse and for stability; any family's D can use them.

Not a model family (``build_models`` never imports it by a family name).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm


def _group_size(n: int, group_size: int) -> int:
    """The largest divisor of ``n`` that is <= ``group_size``: groups must tile the batch."""
    g = max(1, min(group_size, n))
    while n % g:
        g -= 1
    return g


class MinibatchStdDev(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, ProGAN; StyleGAN2's layout) for (N, C, H, W) features.

    Appends ``num_features`` channels holding, per group of samples, the std over the group of each feature
    (channels split into ``num_features`` slices), averaged over the slice's channels and pixels. A D that sees
    how varied a batch is can penalise a collapsed G. Groups follow StyleGAN2: sample i is in group
    i mod (N / group), with group = the largest divisor of N that is <= ``group_size``. Population std, +1e-8
    under the sqrt, computed in float32. Output (N, C + num_features, H, W).
    """

    def __init__(self, group_size: int = 4, num_features: int = 1) -> None:
        super().__init__()
        if group_size < 1 or num_features < 1:
            raise ValueError(f"group_size and num_features must be >= 1, got {group_size}, {num_features}")
        self.group_size = group_size
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        f = self.num_features
        if c % f:
            raise ValueError(f"{c} channels do not split into num_features={f} slices")
        g = _group_size(n, self.group_size)
        y = x.float().reshape(g, n // g, f, c // f, h, w)  # [group member, group, slice, channel, H, W]
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt()  # std over each group's members
        y = y.mean(dim=(2, 3, 4))  # (N/g, f): one number per group and slice
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w).to(x.dtype)  # back to sample i -> group i mod (N/g)
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_features={self.num_features}"


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination (Salimans et al. 2016) for (N, F) features: output (N, F + num_kernels).

    M = x @ T reshaped to (N, B, C); c_b(i, j) = exp(-||M_i,b - M_j,b||_1); o(i)_b = sum_{j != i} c_b(i, j),
    i.e. the sum over j minus the self term exp(0) = 1. N identical samples give o = N - 1 for every kernel;
    different ones less. D thereby sees how close each sample is to the rest of the batch, which exposes a
    collapsed G. T ~ N(0, ``init_std``^2); 0.1 keeps the L1 distances O(1) at init, so exp(-d) is not vanishingly
    small (the reference code uses 0.05).
    """

    def __init__(self, in_features: int, num_kernels: int = 50, kernel_dim: int = 5, init_std: float = 0.1) -> None:
        super().__init__()
        self.in_features, self.num_kernels, self.kernel_dim = in_features, num_kernels, kernel_dim
        self.T = nn.Parameter(torch.randn(in_features, num_kernels * kernel_dim) * init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = (x @ self.T).reshape(x.shape[0], self.num_kernels, self.kernel_dim)  # (N, B, C)
        l1 = (m.unsqueeze(0) - m.unsqueeze(1)).abs().sum(-1)  # (N, N, B)
        o = torch.exp(-l1).sum(1) - 1.0  # drop the self term
        return torch.cat([x, o], dim=1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_kernels={self.num_kernels}, kernel_dim={self.kernel_dim}"


_SN_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def blocks_from(modules, starts: tuple[type, ...]) -> list[nn.Module]:
    """``modules`` grouped into blocks, each from a layer of a ``starts`` type up to the next one (its norm,
    activation, dropout along): a discriminator's blocks for train.freeze_d, without renaming any weight."""
    groups: list[list[nn.Module]] = [[]]
    for m in modules:
        if isinstance(m, starts) and any(isinstance(x, starts) for x in groups[-1]):
            groups.append([])
        groups[-1].append(m)
    return [nn.Sequential(*g) for g in groups if g]


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) on every Conv2d/ConvTranspose2d/Linear in ``module``, in place.

    Each weight is divided by an estimate of its largest singular value (one power iteration per training-mode
    forward), bounding the layer's Lipschitz constant so D cannot sharpen without limit. For convolutions the
    bound is on the kernel reshaped to an (out_channels, -1) matrix (ConvTranspose2d's weight is (in, out, kh, kw):
    its dim 1 goes first), as in the paper, not on the convolution's exact operator norm. Uses the parametrization
    API (``torch.nn.utils.parametrizations.spectral_norm``), not the old hook: each weight then appears in
    ``state_dict`` as ``<layer>.parametrizations.weight.original`` plus the power iteration's
    ``<layer>.parametrizations.weight.0._u`` / ``._v`` buffers, which checkpoints must keep. Layers
    already parametrized are left alone, so calling it twice is harmless. Returns ``module``.
    """
    for layer in [m for m in module.modules() if isinstance(m, _SN_TYPES)]:
        if not parametrize.is_parametrized(layer, "weight"):
            spectral_norm(layer)
    return module
