"""``dinov2-vit-b-14``: DINOv2 ViT-B/14 (Oquab et al. 2023), the class token after the final norm (768-d).

Stein et al. (2023) found DINOv2 features rank generated images closest to human judgement. torch-fidelity 0.4
has a DINOv2 extractor, but it builds the network with ``torch.hub.load("facebookresearch/dinov2")``: code fetched
from GitHub and run, never from a local file. So the ViT forward is written here (a plain pre-norm ViT with
LayerScale, the official ``dinov2_vitb14_pretrain.pth`` state dict loaded with ``weights_only=True``), and the file
is found the usual way: ``--extractor-weights PATH`` / ``GANFORGE_DINOV2_WEIGHTS``, torch hub's cache, else
downloaded once into it (SHA-256 checked). Images are resized to 224 px (bicubic) and ImageNet-normalised, as
torch-fidelity and dgm-eval feed it. It needs a GPU for sets of thousands (about 17 GFLOPs an image).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.errors import UserError
from ganforge.metrics.extractors._fetch import WeightsFile, download, hub_checkpoints
from ganforge.metrics.extractors.base import Device, ExtractorSpec, check_images

DINOV2_ENV = "GANFORGE_DINOV2_WEIGHTS"
DINOV2_B14 = WeightsFile("DINOv2 ViT-B/14", "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
                         "dinov2_vitb14_pretrain.pth",
                         "0b8b82f85de91b424aded121c7e1dcc2b7bc6d0adeea651bf73a13307fad8c73", "~330 MB")
ARCH_B14 = {"dim": 768, "depth": 12, "heads": 12, "patch": 14}
INPUT = 224
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale (``ls1.gamma``, ``ls2.gamma``), DINOv2's key names."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        self.attn.proj = nn.Linear(dim, dim)
        self.ls1 = nn.Module()
        self.ls1.gamma = nn.Parameter(torch.ones(dim))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential()
        self.mlp.fc1 = nn.Linear(dim, 4 * dim)
        self.mlp.fc2 = nn.Linear(4 * dim, dim)
        self.ls2 = nn.Module()
        self.ls2.gamma = nn.Parameter(torch.ones(dim))

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.attn.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.attn.proj(out.transpose(1, 2).reshape(n, t, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1.gamma * self._attention(self.norm1(x))
        return x + self.ls2.gamma * self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class DinoViT(nn.Module):
    """The DINOv2 backbone; ``forward`` returns the normalised class token. ``grid``: the side of the position
    table the weights were trained with (37 = 518 px / 14), interpolated to the input's grid."""

    def __init__(self, dim: int, depth: int, heads: int, patch: int, grid: int = 37) -> None:
        super().__init__()
        self.patch = patch
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # unused at inference; in the state dict
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def _positions(self, rows: int, cols: int) -> torch.Tensor:
        table = self.pos_embed.float()
        side = int(math.sqrt(table.shape[1] - 1))
        if (rows, cols) == (side, side):
            return table
        grid = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        # DINOv2's own rule: bicubic, with 0.1 added to the target grid before taking the scale factor
        grid = F.interpolate(grid, scale_factor=((rows + 0.1) / side, (cols + 0.1) / side), mode="bicubic",
                             align_corners=False)
        return torch.cat([table[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed.proj(x)
        rows, cols = tokens.shape[-2:]
        tokens = tokens.flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + self._positions(rows, cols).to(tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]


def resolve_dinov2_weights(path=None) -> Path:
    """``path``, else ``$GANFORGE_DINOV2_WEIGHTS``, else torch hub's cache, else downloaded there now."""
    spec = DINOV2_B14
    for given, source in ((path, "--extractor-weights"), (os.environ.get(DINOV2_ENV), DINOV2_ENV)):
        if given:
            p = Path(given).expanduser()
            if p.is_dir():
                p = p / spec.filename
            if not p.is_file():
                raise UserError(f"{source} {p}: no such file; download the {spec.what} weights from {spec.url} and "
                                "pass that file's path")
            return p
    cached = hub_checkpoints() / spec.filename
    if cached.is_file():
        return cached
    return download(spec, f"pass --extractor-weights PATH (or set {DINOV2_ENV}=PATH), or use an offline "
                          "extractor (ssl-conv, random-conv)")


def load_dinov2(path: Path) -> DinoViT:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"cannot read {path} as a plain state dict ({type(exc).__name__}); download "
                        f"{DINOV2_B14.url} again") from None
    if not isinstance(state, dict) or "pos_embed" not in state:
        raise UserError(f"{path} is not a DINOv2 state dict; download {DINOV2_B14.url} again")
    grid = int(math.sqrt(state["pos_embed"].shape[1] - 1))
    model = DinoViT(**ARCH_B14, grid=grid)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{path} is not DINOv2 ViT-B/14 ({first}); download {DINOV2_B14.url}") from None
    return model.eval().requires_grad_(False)


class DinoV2Extractor:
    """``dinov2-vit-b-14``: 768-d class tokens; no class head."""

    name = "dinov2-vit-b-14"
    num_classes = None

    def __init__(self, weights_path=None, device: Device = "cpu", batch_size: int = 64) -> None:
        self.weights_path = resolve_dinov2_weights(weights_path)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.model = load_dinov2(self.weights_path).to(self.device)
        self.feature_dim = int(self.model.norm.weight.shape[0])
        self.mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] (N, 1|3, H, W) -> ImageNet-normalised (N, 3, 224, 224): 8-bit rounding as a saved image has."""
        x = ((images.float().clamp(-1, 1) + 1) * 127.5).round() / 255.0
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x.to(self.device), size=(INPUT, INPUT), mode="bicubic", align_corners=False)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, Optional[torch.Tensor]]:
        check_images(images)
        if images.shape[1] not in (1, 3):
            raise ValueError(f"expected 1 or 3 channels, got {images.shape[1]}")
        out = [self.model(self.prepare(images[i:i + self.batch_size])).float().cpu()
               for i in range(0, images.shape[0], self.batch_size)]
        return {"features": torch.cat(out) if out else torch.empty(0, self.feature_dim), "logits": None}


EXTRACTORS = (ExtractorSpec("dinov2-vit-b-14", lambda device, weights=None, **kw: DinoV2Extractor(weights, device, **kw),
                            offline=False, about="DINOv2 ViT-B/14 class token (768-d): closest to people's rankings; "
                                                 "downloaded once (~330 MB), a GPU advised"),)
