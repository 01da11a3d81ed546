"""``ssl-conv``: a small conv encoder trained self-supervised on the reference images themselves, offline.

No downloaded network knows a user's icons, sprites or scans; the reference set does. SimCLR-style (Chen et al.
2020): two augmented views of each image are pulled together and pushed from the other images' views (NT-Xent),
so the encoder learns what tells this data's images apart. The augmentations: crop, flip, a small
brightness/contrast change, and SimCLR's colour distortion at a quarter of its ImageNet strength (s = 0.25: hue
turns of up to 0.05, saturation/contrast/brightness +-20%, grey one view in five). Without colour distortion a
contrastive encoder tells images apart by their colour histogram (Chen et al. 2020, section 3), and its FID then
ranked a slight tint as worse than heavy blur: against class judges on colour icons, Spearman's rho 0.870 without
it, 0.956 with it (four seeds, ``bench metric-agreement``, docs/BENCHMARKS.md). A tint still costs several times
the reals' FID. No blur or noise augmentation: what the encoder learns to ignore, its Fréchet distance cannot see.

Training takes a CPU minute or two and is done once per reference: the encoder is cached under
``$GANFORGE_CACHE/ssl-conv`` (default ``~/.cache/ganforge``) as ``.safetensors`` + ``.json``, keyed by a SHA-256 of
the reference images (quantised to 8 bits) and the settings. One seed gives the same encoder on one machine.
Features: the trained encoder's pooled activations of every stage (``_convnet``), each image's vector scaled to
unit length, not the projection head's.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.errors import UserError
from ganforge.metrics.extractors._convnet import ConvEncoder, EncoderExtractor, side_for, to_rgb_side
from ganforge.metrics.extractors.base import ExtractorSpec

FORMAT = "ganforge-ssl-conv/1"  # bump with any change to the encoder, the augmentations or the training
FEATURES = "stages-unit"  # the features read from the encoder (part of the reference statistics' cache key)


@dataclass(frozen=True)
class SslSettings:
    """What the encoder is trained with; every field is part of the cache key."""

    seed: int = 0
    steps: int = 300
    batch: int = 128
    widths: tuple[int, ...] = (32, 64, 128, 256)
    lr: float = 2e-3
    temperature: float = 0.2
    proj_dim: int = 64
    max_images: int = 5000  # the first this many reference images are trained on
    colour: float = 0.25  # SimCLR's colour distortion strength s (jitter 0.8s, hue 0.2s, p 0.8; grey 0.2); 0: none


def _stderr(message: str) -> None:
    """Progress goes to stderr: ``ganforge evaluate`` prints its table on stdout."""
    print(message, file=sys.stderr)


def cache_dir() -> Path:
    return Path(os.environ.get("GANFORGE_CACHE", Path.home() / ".cache" / "ganforge")) / "ssl-conv"


def fingerprint(images: torch.Tensor) -> str:
    """SHA-256 of the images quantised to 8 bits, with their shape: the same data gives the same key anywhere."""
    u8 = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).contiguous()
    h = hashlib.sha256(str(tuple(u8.shape)).encode())
    h.update(u8.numpy().tobytes())
    return h.hexdigest()


def cache_key(data_fp: str, side: int, settings: SslSettings) -> str:
    raw = json.dumps({"format": FORMAT, "data": data_fp, "side": side, **asdict(settings)}, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def _grey(y: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images in [0, 1], kept as one channel."""
    return (y * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def _hue_rotate(y: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate each image's chroma by ``turns`` of a full circle: a rotation of the I/Q plane of YIQ, luma kept."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    a = 2 * math.pi * turns
    rot = torch.zeros(len(turns), 3, 3)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = a.cos(), -a.sin(), a.sin(), a.cos()
    m = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # (N, 3, 3)
    return torch.einsum("nij,njhw->nihw", m, y)


def colour_distort(x: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """SimCLR's colour distortion at strength ``s`` (Chen et al. 2020, appendix A): with probability 0.8,
    brightness, contrast and saturation factors in [1 - 0.8s, 1 + 0.8s] and a hue turn in [-0.2s, 0.2s]; then grey
    with probability 0.2. Without it a contrastive encoder can tell images apart by their colour histogram alone."""
    n = x.shape[0]
    y = (x + 1) / 2
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=gen)  # noqa: E731
    j = 0.8 * strength
    b, c, s, h = u(1 - j, 1 + j), u(1 - j, 1 + j), u(1 - j, 1 + j), u(-0.2 * strength, 0.2 * strength)
    apply = (torch.rand(n, generator=gen) < 0.8).view(n, 1, 1, 1)
    grey = (torch.rand(n, generator=gen) < 0.2).view(n, 1, 1, 1)
    v = lambda t: t.view(n, 1, 1, 1)  # noqa: E731
    z = (y * v(b)).clamp(0, 1)
    m = _grey(z).mean(dim=(2, 3), keepdim=True)
    z = ((z - m) * v(c) + m).clamp(0, 1)
    g = _grey(z)
    z = ((z - g) * v(s) + g).clamp(0, 1)
    z = _hue_rotate(z, h).clamp(0, 1)
    y = torch.where(apply, z, y)
    y = torch.where(grey, _grey(y).expand_as(y), y)
    return y * 2 - 1


def augment(x: torch.Tensor, gen: torch.Generator, colour: float = 0.0) -> torch.Tensor:
    """A random crop (70-100% of the side, anywhere), a horizontal flip half the time, brightness/contrast +-15%;
    and SimCLR's colour distortion when ``colour`` > 0."""
    n = x.shape[0]
    scale = 0.7 + 0.3 * torch.rand(n, generator=gen)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (1 - scale).unsqueeze(1)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.15
    bright = (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.15
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = ((out - mean) * contrast + mean + bright).clamp(-1, 1)
    return colour_distort(out, colour, gen) if colour > 0 else out


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner among the 2N - 1 other views."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def train_encoder(x: torch.Tensor, settings: SslSettings, log: Callable[[str], None] = _stderr) -> tuple[ConvEncoder, dict]:
    """Train on prepared images ``x`` (N, 3, S, S) on the CPU; returns the encoder (eval mode) and a summary."""
    torch.manual_seed(settings.seed)  # dropout-free, but BatchNorm and the optimiser see only seeded tensors
    gen = torch.Generator().manual_seed(settings.seed)
    enc = ConvEncoder(settings.widths, seed=settings.seed, norm=True)
    head = nn.Sequential(nn.Linear(settings.widths[-1], 256), nn.ReLU(inplace=True), nn.Linear(256, settings.proj_dim))
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=settings.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.steps)
    batch = min(settings.batch, x.shape[0])
    t0, losses = time.process_time(), []
    enc.train()
    for step in range(settings.steps):
        idx = torch.randperm(x.shape[0], generator=gen)[:batch]
        xb = x[idx]
        views = [head(enc.pooled(augment(xb, gen, settings.colour))) for _ in range(2)]
        loss = nt_xent(views[0], views[1], settings.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    enc.eval()
    tail = losses[-max(1, len(losses) // 10):]
    return enc, {"first_loss": losses[0] if losses else None, "final_loss": sum(tail) / len(tail),
                 "cpu_seconds": round(time.process_time() - t0, 2), "images": int(x.shape[0])}


def _save(enc: ConvEncoder, path: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    from ganforge.io_utils import atomic_target, atomic_write_text

    state = {k: v.detach().contiguous() for k, v in enc.state_dict().items()}
    with atomic_target(path) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, "widths": json.dumps(list(enc.widths))})
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")


def load_encoder(path: Path) -> ConvEncoder:
    """An encoder saved by ``fit`` (safetensors only; nothing is unpickled)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = dict(fh.metadata() or {})
            state = {k: fh.get_tensor(k) for k in fh.keys()}
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        enc = ConvEncoder(json.loads(meta["widths"]), norm=True)
        enc.load_state_dict(state, strict=True)
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read the ssl-conv encoder {path} ({first}): delete it and it is trained again") from None
    return enc.eval()


def fit(images: torch.Tensor, settings: SslSettings = SslSettings(), use_cache: bool = True,
        log: Callable[[str], None] = _stderr) -> tuple[ConvEncoder, int, Path]:
    """The encoder for these reference images: from the cache, else trained now and cached. Returns it, its input
    side and the cache file."""
    if images.dim() != 4 or images.shape[0] < 2:
        raise UserError(f"ssl-conv needs at least 2 reference images to learn from, got {tuple(images.shape)}")
    side = side_for(*images.shape[-2:])
    ref = images[:settings.max_images]
    data_fp = fingerprint(ref)
    key = cache_key(data_fp, side, settings)
    path = cache_dir() / f"ssl-conv-{key}.safetensors"
    if use_cache and path.is_file():
        return load_encoder(path), side, path
    log(f"ssl-conv: training an encoder on {ref.shape[0]:,} reference images ({settings.steps} steps, once; "
        f"cached in {path.parent})")
    with torch.inference_mode(False), torch.enable_grad():
        x = to_rgb_side(ref, side).clone()
        enc, summary = train_encoder(x, settings, log)
    meta = {"format": FORMAT, "key": key, "data_sha256": data_fp, "side": side, **asdict(settings), **summary}
    _save(enc, path, meta)
    log(f"ssl-conv: trained in {summary['cpu_seconds']} CPU s (contrastive loss {summary['first_loss']:.3f} -> "
        f"{summary['final_loss']:.3f})")
    return enc, side, path


def ssl_conv(device="cpu", weights=None, reference=None, batch_size: int = 256, settings: Optional[SslSettings] = None,
             log: Callable[[str], None] = _stderr) -> EncoderExtractor:
    """The extractor: an encoder file (``weights``) when given, else one fitted on ``reference`` (the reference
    images, or a function returning them)."""
    if weights is not None:
        enc = load_encoder(Path(weights))
        ext = EncoderExtractor("ssl-conv", [enc], device, batch_size, layout=False, unit=True)
        ext.weights_path = Path(weights)
        return ext
    if reference is None:
        raise UserError("extractor ssl-conv learns from the reference images: give it the reference (or an "
                        "encoder file it saved)")
    images = reference() if callable(reference) else reference
    enc, side, path = fit(images, settings or SslSettings(), log=log)
    ext = EncoderExtractor("ssl-conv", [enc], device, batch_size, side=side, layout=False, unit=True)
    ext.weights_path = path
    ext.cache_tag = f"{path.stem}-{FEATURES}"  # the reference statistics' cache follows the encoder and features
    return ext


EXTRACTORS = (ExtractorSpec("ssl-conv", ssl_conv, offline=True, fits_reference=True,
                            about="a conv encoder trained self-supervised (SimCLR) on the reference images, cached"),)
