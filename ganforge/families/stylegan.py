"""StyleGAN (Karras et al. 2019) and StyleGAN2 (Karras et al. 2020): a style-based generator and its training.

Generator: a mapping network (``mapping_layers`` equalized-LR fully connected layers, their learning rate
multiplied by ``mapping_lr_mul``) turns z (second-moment normalised) into w; a learned 4x4 constant is refined
resolution by resolution, every layer taking its own w ("style") through an affine map, plus per-pixel noise with
a learned strength. ``style`` picks how a style enters a layer:

- ``modulated`` (StyleGAN2, default): the conv weight is scaled per input channel by the style, then each output
  channel's weights are rescaled to unit norm (demodulation), so unit-variance inputs give unit-variance outputs
  without normalising the activations; RGB outputs of every resolution are summed (the "skip" generator).
- ``adain`` (StyleGAN): conv, noise, bias, activation, instance norm, then scale and shift by the style; one RGB
  layer at the end.

Upsampling is bilinear (the [1, 3, 3, 1] filter of the papers, edges replicated); the output goes through tanh so
samples lie in [-1, 1] like the data. A running mean of w (``w_avg``) is tracked while training for the
truncation trick. Discriminator: StyleGAN2's residual D (equalized LR, [1, 3, 3, 1]-blurred strided
downsampling, minibatch std at 4x4).

Widths: ``g_width``/``d_width`` are the channels at the image resolution; every halving of the resolution doubles
them, up to ``max_channels`` (stylegan2-ada's ``channel_base = width * image_size``, ``channel_max``).

Training (``StyleganTrainer``): phases ``Gmain`` (non-saturating loss, style mixing), ``Greg`` (lazy path-length
regularisation), ``Dmain`` (non-saturating loss), ``Dreg`` (lazy R1), as stylegan2-ada's ``loss.py``.
"""
from __future__ import annotations

import math
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from ganforge.families.parts import losses
from ganforge.families.parts.ada import AdaTrainer
from ganforge.config_base import ModelBase, check_power_of_two
from ganforge.errors import UserError
from ganforge.families import ADA_KEYS, OPTIMIZER_KEYS, Family, register
from ganforge.families.parts.equalized import SQRT2, EqualizedConv2d, EqualizedLinear, channels_at
from ganforge.families.parts.layers import MinibatchStdDev
from ganforge.families.parts.style_layers import (  # noqa: F401  (the layers' old home: tests import them here)
    AdainLayer, MappingNetwork, ModulatedConv2d, ModulatedLayer, NoiseInput, ToRGB, lrelu, normalize_2nd_moment, upsample)
from ganforge.families.contract import Batch, Fixed, Phase, StatDict, Trainer

NOISE_MODES = ("random", "const", "none")
W_AVG_BETA = 0.995  # w_avg's decay per training forward (stylegan2-ada)
PL_DECAY = 0.01  # the path-length mean's update rate (stylegan2-ada)
PL_BATCH_SHRINK = 2  # the path-length penalty runs on half the batch (stylegan2-ada)


class StyleganConfig(ModelBase):
    """Style-based generator (StyleGAN / StyleGAN2), residual discriminator."""

    family: Literal["stylegan"] = "stylegan"
    z_dim: int = Field(512, ge=1)
    w_dim: int = Field(512, ge=1)  # intermediate latent (style) size
    mapping_layers: int = Field(8, ge=1, le=16)  # fully connected layers of the mapping network
    mapping_lr_mul: float = Field(0.01, gt=0.0, le=1.0)  # the mapping learns this much slower (equalized LR)
    style: Literal["modulated", "adain"] = "modulated"  # StyleGAN2 weight (de)modulation, or StyleGAN's AdaIN
    max_channels: int = Field(512, ge=1)  # cap on the channels of any resolution (channel_max)
    style_mixing: float = Field(0.9, ge=0.0, le=1.0)  # probability that G's batch mixes two latents
    pl_weight: float = Field(0.0, ge=0.0)  # path-length regularisation weight; 0 = off (StyleGAN2: 2)
    pl_every: int = Field(4, ge=1)  # lazy path-length: every k steps, weighted by k
    mbstd_group: int = Field(4, ge=0)  # minibatch std group size at D's 4x4 stage; 0 = off
    mbstd_features: int = Field(1, ge=1)  # minibatch std channels
    batch_norm: bool = False  # unused: no BatchNorm anywhere (demodulation / instance norm instead)

    @model_validator(mode="after")
    def _check(self) -> "StyleganConfig":
        check_power_of_two(self.image_size, self.family)
        if self.max_channels < min(self.g_width, self.d_width):
            raise ValueError(f"max_channels={self.max_channels} is below g_width={self.g_width} / "
                             f"d_width={self.d_width}: widths are the channels at the image resolution, "
                             "max_channels caps the lower resolutions")
        if self.mbstd_group and channels_at(4, self.image_size, self.d_width, self.max_channels) % self.mbstd_features:
            raise ValueError(f"mbstd_features={self.mbstd_features} must divide D's channels at 4x4 "
                             f"({channels_at(4, self.image_size, self.d_width, self.max_channels)})")
        return self


def resolutions(image_size: int) -> list[int]:
    """4, 8, ..., image_size."""
    return [2 ** k for k in range(2, int(math.log2(image_size)) + 1)]


# ---------------------------------------------------------------------------------------------------------------
# generator


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> images. Layer i of the network reads ws[:, i]; in the modulated (skip) generator
    each resolution's RGB layer reads the same w as the next resolution's first conv (stylegan2-ada's layout), so
    both variants take num_ws = 2 log2(image_size) - 2 styles."""

    def __init__(self, cfg: StyleganConfig):
        super().__init__()
        self.modulated = cfg.style == "modulated"
        ch = lambda r: channels_at(r, cfg.image_size, cfg.g_width, cfg.max_channels)  # noqa: E731
        self.const = nn.Parameter(torch.randn(ch(4), 4, 4))
        Layer = ModulatedLayer if self.modulated else AdainLayer
        layers: list[nn.Module] = []
        if not self.modulated:  # StyleGAN styles the constant itself before its first conv
            layers.append(AdainLayer(ch(4), ch(4), cfg.w_dim, 4, up=False, conv=False))
        layers.append(Layer(ch(4), ch(4), cfg.w_dim, 4, up=False))
        self.rgb_index: list[int] = []  # per resolution: the ws index of its RGB layer (modulated only)
        self.torgbs = nn.ModuleList()
        for res in resolutions(cfg.image_size):
            if res > 4:
                layers += [Layer(ch(res // 2), ch(res), cfg.w_dim, res, up=True),
                           Layer(ch(res), ch(res), cfg.w_dim, res, up=False)]
            if self.modulated:
                self.torgbs.append(ToRGB(ch(res), cfg.channels, cfg.w_dim, True, len(resolutions(cfg.image_size))))
                self.rgb_index.append(len(layers))
        if not self.modulated:
            self.torgbs.append(ToRGB(ch(cfg.image_size), cfg.channels, cfg.w_dim, styled=False))
        self.layers = nn.ModuleList(layers)
        self.num_ws = len(layers) + 1 if self.modulated else len(layers)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode={noise_mode!r}: choose one of {', '.join(NOISE_MODES)}")
        if ws.dim() != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"ws must be (N, {self.num_ws}, w_dim), got {tuple(ws.shape)}")
        x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        if not self.modulated:
            for i, layer in enumerate(self.layers):
                x = layer(x, ws[:, i], noise_mode)
            return torch.tanh(self.torgbs[0](x, None))
        img: Optional[torch.Tensor] = None
        per_res = iter(zip(self.torgbs, self.rgb_index))
        for i, layer in enumerate(self.layers):
            x = layer(x, ws[:, i], noise_mode)
            if not layer.up:  # the last layer of a resolution: its RGB output joins the image
                torgb, j = next(per_res)
                y = torgb(x, ws[:, j])
                img = y if img is None else upsample(img) + y
        return torch.tanh(img)


class StyleGenerator(nn.Module):
    """Mapping + synthesis. ``G(z)`` draws images; ``mapping``/``synthesis`` expose w for truncation and mixing."""

    def __init__(self, cfg: StyleganConfig):
        super().__init__()
        self.z_dim, self.w_dim = cfg.z_dim, cfg.w_dim
        self.mapping_net = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr_mul)
        self.synthesis_net = SynthesisNetwork(cfg)
        self.num_ws = self.synthesis_net.num_ws
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        # the ws of resolutions up to 8x8 are "coarse" (pose, shape), the rest "fine" (style, detail)
        self.default_crossover = min(self.num_ws - 1, 4)

    def mapping(self, z: torch.Tensor, y: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                update_w_avg: bool = True) -> torch.Tensor:
        """z (N, z_dim) -> w (N, w_dim); tracks ``w_avg`` while training (unless ``update_w_avg`` is False, as for
        the second latent of style mixing); truncation ``w_avg.lerp(w, psi)``. ``y`` is unused (unconditional)."""
        w = self.mapping_net(z)
        if self.training and update_w_avg:
            with torch.no_grad():
                self.w_avg.lerp_(w.detach().mean(0), 1.0 - W_AVG_BETA)
        if truncation_psi != 1:
            w = self.w_avg.lerp(w, truncation_psi)
        return w

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        """ws (N, num_ws, w_dim) -> images (N, C, H, W) in [-1, 1]."""
        return self.synthesis_net(ws, noise_mode)

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """w (N, w_dim) -> ws (N, num_ws, w_dim): the same style for every layer."""
        return w.unsqueeze(1).expand(-1, self.num_ws, -1)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                noise_mode: str = "random") -> torch.Tensor:
        return self.synthesis(self.broadcast(self.mapping(z, y, truncation_psi)), noise_mode)


# ---------------------------------------------------------------------------------------------------------------
# discriminator


class Blur(nn.Module):
    """The [1, 3, 3, 1] low-pass filter (outer product, normalised), depthwise, with ``pad`` zeros each side."""

    def __init__(self, pad: int):
        super().__init__()
        k = torch.tensor([1.0, 3.0, 3.0, 1.0])
        k = torch.outer(k, k)
        self.register_buffer("kernel", (k / k.sum())[None, None], persistent=False)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        return F.conv2d(F.pad(x, [self.pad] * 4), self.kernel.to(x.dtype).expand(c, 1, 4, 4), groups=c)


class DownConv(EqualizedConv2d):
    """Blur then a stride-2 equalized conv (StyleGAN2's antialiased downsampling): halves the size."""

    def __init__(self, c_in: int, c_out: int, kernel: int, bias: bool = True, gain: float = SQRT2):
        super().__init__(c_in, c_out, kernel, bias=bias, gain=gain)
        self.blur = Blur(pad=(kernel + 1) // 2)  # 3x3: pad 2, 1x1: pad 1 -> exactly half the size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.blur(x), self.weight * self.scale, self.bias, stride=2)


class DiscriminatorBlock(nn.Module):
    """Residual block: conv, strided conv (both leaky ReLU), plus a 1x1 strided skip; the sum scaled by 1/sqrt 2."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv0 = EqualizedConv2d(c_in, c_in, 3)
        self.conv1 = DownConv(c_in, c_out, 3)
        self.skip = DownConv(c_in, c_out, 1, bias=False, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.skip(x)
        x = lrelu(self.conv1(lrelu(self.conv0(x))))
        return (x + y) / SQRT2


class StyleDiscriminator(nn.Module):
    """StyleGAN2's residual D: fromRGB at the image size, a block per halving, then minibatch std, a 3x3 conv and
    two FC layers at 4x4. ``D(x, y=None)`` -> logits (N,)."""

    def __init__(self, cfg: StyleganConfig):
        super().__init__()
        ch = lambda r: channels_at(r, cfg.image_size, cfg.d_width, cfg.max_channels)  # noqa: E731
        self.from_rgb = EqualizedConv2d(cfg.channels, ch(cfg.image_size), 1)
        self.blocks = nn.Sequential(*[DiscriminatorBlock(ch(r), ch(r // 2))
                                      for r in reversed(resolutions(cfg.image_size)) if r > 4])
        c = ch(4)
        self.mbstd = MinibatchStdDev(cfg.mbstd_group, cfg.mbstd_features) if cfg.mbstd_group else None
        self.conv = EqualizedConv2d(c + (cfg.mbstd_features if cfg.mbstd_group else 0), c, 3)
        self.fc = EqualizedLinear(c * 16, c)
        self.out = EqualizedLinear(c, 1, gain=1.0)

    def d_blocks(self) -> list[nn.Module]:
        """D's blocks from the image side, for train.freeze_d (FreezeD): fromRGB with the first residual block (as in
        stylegan2-ada), then each block; the 4x4 epilogue (mbstd, conv, FC layers) stays trainable."""
        return [nn.Sequential(self.from_rgb, self.blocks[0]), *self.blocks[1:]]

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.blocks(lrelu(self.from_rgb(x)))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = lrelu(self.conv(x))
        x = lrelu(self.fc(x.flatten(1)))
        return self.out(x).reshape(-1)


# ---------------------------------------------------------------------------------------------------------------
# training


class StyleganTrainer(AdaTrainer, Trainer):
    """stylegan2-ada's phases: ``Gmain`` (non-saturating loss on style-mixed fakes), ``Greg`` (path length, every
    ``model.pl_every`` steps, when ``model.pl_weight`` > 0), ``Dmain`` (non-saturating loss), ``Dreg`` (R1 every
    ``train.r1_every`` steps, weighted by the interval, when ``train.r1_gamma`` > 0; R2 on fakes beside it when
    ``train.r2_gamma`` > 0). ``train.loss`` is ``bce`` (non-saturating, stylegan2-ada's) or ``rpgan`` (R3GAN's
    relativistic pairing: ``Gmain`` then also shows D the step's reals).

    ``train.augment=ada`` (stylegan2-ada's ADA) augments every image D sees in Gmain, Dmain and Dreg (R1 on the
    augmented reals), and ADA's controller is extra state beside the path-length mean.

    Every random draw (latents, mixing cutoffs, noise, the path-length probe) comes from torch's global RNG on the
    device, which the loop checkpoints; the path-length mean is extra state; so resume is exact. Learning rates
    and Adam's betas are used as configured: stylegan2-ada also rescales them by every/(every+1) for lazily
    regularised networks, which ganforge does not (yet); at R1 every 16 that is a 6% difference in lr.
    """

    def __init__(self, cfg, nets, ctx):
        super().__init__(cfg, nets, ctx)
        self.tc, self.mc = cfg.train, cfg.model
        self.kind = losses.canonical_loss(self.tc.loss)
        if self.kind not in ("bce", "rpgan"):
            raise UserError(f"train.loss={self.tc.loss}: stylegan trains with bce (non-saturating) or rpgan; "
                            "use --set train.loss=bce or train.loss=rpgan")
        if self.kind == "rpgan":
            self.fake_score_stat = None  # relativistic logits are no probability of being real
        keys = ["loss_g", "loss_d", "loss_d_real", "loss_d_fake", "d_real", "d_fake"]
        keys += [name for name, gamma in (("r1", self.tc.r1_gamma), ("r2", self.tc.r2_gamma)) if gamma > 0]
        if self.mc.pl_weight > 0:
            keys += ["pl_penalty", "pl_mean"]
        self.stat_keys = (*keys, *self.ada_stat_keys)
        self.pl_mean = torch.zeros((), device=ctx.device)

    # ------------------------------------------------------------------ declarations

    def phases(self) -> list[Phase]:
        out = [Phase("Gmain", "G", ("G",), self.g_main)]
        if self.mc.pl_weight > 0:
            out.append(Phase("Greg", "G", ("G",), self.g_reg, every=self.mc.pl_every))
        out.append(Phase("Dmain", "D", ("D",), self.d_main, repeat=self.tc.d_steps))
        if self.tc.r1_gamma > 0 or self.tc.r2_gamma > 0:
            out.append(Phase("Dreg", "D", ("D",), self.d_reg, every=self.tc.r1_every))
        return out

    def draw(self, generator: nn.Module, fixed: Fixed) -> torch.Tensor:
        """The fixed latents with the fixed noise (``noise_mode="const"``): grids of different epochs compare."""
        return generator(fixed.tensors["z"].to(self.ctx.device), noise_mode="const").float().cpu()

    def extra_state(self):
        tensors, meta = super().extra_state()  # ADA's, when on
        return {**tensors, "pl_mean": self.pl_mean}, meta

    def load_extra_state(self, tensors, meta) -> None:
        super().load_extra_state(tensors, meta)
        if "pl_mean" in tensors:
            self.pl_mean = tensors["pl_mean"].to(self.ctx.device, torch.float32).clone()

    # ------------------------------------------------------------------ pieces

    def styles(self, n: int) -> torch.Tensor:
        """ws (n, num_ws, w_dim) for ``n`` fakes: with probability ``style_mixing`` the layers from a random cutoff
        on take a second latent's w (a mask, not a slice, so the cutoff never leaves the device)."""
        G = self.nets["G"]
        ws = G.broadcast(G.mapping(self.latents(n)[0]))
        if self.mc.style_mixing <= 0:
            return ws
        dev, num = ws.device, G.num_ws
        ws2 = G.broadcast(G.mapping(self.latents(n)[0], update_w_avg=False))
        cutoff = torch.randint(1, num, (), device=dev)
        cutoff = torch.where(torch.rand((), device=dev) < self.mc.style_mixing, cutoff, torch.full_like(cutoff, num))
        second = torch.arange(num, device=dev) >= cutoff
        return torch.where(second[None, :, None], ws2, ws)

    def real(self, batch: Batch) -> torch.Tensor:
        return batch[0].to(self.ctx.device, non_blocking=True).contiguous(memory_format=self.ctx.memory_format)

    # ------------------------------------------------------------------ phases

    def g_main(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        G = self.nets["G"]
        with self.ctx.autocast():
            fake = G.synthesis(self.styles(batch[0].shape[0]))
            logits = self.nets["D"](self.augment(fake)).float()
            real_logits = None
            if self.kind == "rpgan":  # paired with this step's reals, which carry no gradient to G
                with torch.no_grad():
                    real_logits = self.nets["D"](self.augment(self.real(batch))).float()
        loss = losses.g_loss(logits, self.kind, real_logits) if real_logits is not None else F.softplus(-logits).mean()
        return loss, {"loss_g": loss}

    def g_reg(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        """Path-length regularisation (StyleGAN2): |J_w^T y| for random image-space y should stay at its running
        mean, so a fixed-size step in w moves the image by a fixed amount."""
        G = self.nets["G"]
        n = max(1, batch[0].shape[0] // PL_BATCH_SHRINK)
        with self.ctx.autocast():
            ws = self.styles(n)
            fake = G.synthesis(ws)
        probe = torch.randn_like(fake) / math.sqrt(fake.shape[2] * fake.shape[3])
        (grad,) = torch.autograd.grad((fake * probe).sum(), ws, create_graph=True)
        lengths = grad.float().square().sum(2).mean(1).sqrt()
        with torch.no_grad():
            new_mean = self.pl_mean.lerp(lengths.mean(), PL_DECAY)
            self.pl_mean = torch.where(torch.isfinite(new_mean), new_mean, self.pl_mean)  # a NaN must not stick
        penalty = (lengths - self.pl_mean).square().mean()
        loss = penalty * losses.lazy_weight(self.mc.pl_weight, self.mc.pl_every)
        return loss, {"pl_penalty": penalty, "pl_mean": self.pl_mean}

    def d_main(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        G, D = self.nets["G"], self.nets["D"]
        real = self.real(batch)
        with self.ctx.autocast():
            with torch.no_grad():
                fake = G.synthesis(self.styles(real.shape[0]))
            fake_logits = D(self.augment(fake)).float()
            real_logits = D(self.augment(real)).float()
        if self.kind == "rpgan":
            loss_real, loss_fake = losses.d_loss(real_logits, fake_logits, self.kind)
        else:
            loss_fake = F.softplus(fake_logits).mean()  # -log(1 - D(G(z)))
            loss_real = F.softplus(-real_logits).mean()  # -log D(x)
        loss = loss_real + loss_fake
        return loss, {"loss_d": loss, "loss_d_real": loss_real, "loss_d_fake": loss_fake,
                      "d_real": torch.sigmoid(real_logits).mean(), "d_fake": torch.sigmoid(fake_logits).mean(),
                      **self.ada_observe(real_logits, fake_logits, self.kind)}

    def d_reg(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        """Lazy R1 (Mescheder et al. 2018; StyleGAN2): gamma/2 E||grad_x D(x)||^2 every ``r1_every`` steps,
        weighted by the interval; on the augmented reals when ADA is on (as stylegan2-ada). R2, when on: the same
        on fresh fakes (R3GAN)."""
        tc, D = self.tc, self.nets["D"]
        loss, stats = torch.zeros((), device=self.ctx.device), {}
        if tc.r1_gamma > 0:
            real = self.augment(self.real(batch)).detach().requires_grad_(True)
            with self.ctx.autocast():
                logits = D(real).float()
            stats["r1"] = losses.r1_penalty(logits, real)
            loss = loss + losses.lazy_weight(tc.r1_gamma / 2, tc.r1_every) * stats["r1"]
        if tc.r2_gamma > 0:
            with self.ctx.autocast():
                with torch.no_grad():
                    fake = self.nets["G"].synthesis(self.styles(batch[0].shape[0]))
                fake = self.augment(fake).detach().requires_grad_(True)
                logits = D(fake).float()
            stats["r2"] = losses.r2_penalty(logits, fake)
            loss = loss + losses.lazy_weight(tc.r2_gamma / 2, tc.r1_every) * stats["r2"]
        return loss, stats


def _networks(cfg: StyleganConfig) -> dict[str, nn.Module]:
    return {"G": StyleGenerator(cfg), "D": StyleDiscriminator(cfg)}


# ---------------------------------------------------------------------------------------------------------------
# export: the whole generator with truncation as an input, and its two halves, so that styles can be mixed outside

EXAMPLE_PSI = 0.7  # the truncation the export is checked at (psi 1 would leave the truncation untested)


class _Truncated(nn.Module):
    """z (N, z_dim), psi (N,) -> w (N, w_dim) truncated towards ``w_avg``, as ``mapping(z, truncation_psi=psi)``."""

    def __init__(self, G: StyleGenerator):
        super().__init__()
        self.G = G

    def forward(self, z: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        return torch.lerp(self.G.w_avg, self.G.mapping(z).float(), psi.float()[:, None])


class _Synthesis(nn.Module):
    """ws (N, num_ws, w_dim) -> images in [-1, 1] with the fixed per-layer noise (sampling's default)."""

    def __init__(self, G: StyleGenerator):
        super().__init__()
        self.G = G

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        return self.G.synthesis(ws, noise_mode="const").float().clamp(-1.0, 1.0)


class _Full(nn.Module):
    """z, psi -> images: what ``ganforge sample --truncation PSI`` draws."""

    def __init__(self, G: StyleGenerator):
        super().__init__()
        self.mapping, self.synthesis = _Truncated(G), _Synthesis(G)

    def forward(self, z: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.mapping.G.broadcast(self.mapping(z, psi)))


def _exports(cfg: StyleganConfig, nets: dict[str, nn.Module]) -> dict:
    """generator (z, psi -> image), mapping (z, psi -> w) and synthesis (ws -> image); the synthesis example mixes
    two seeds' styles at the generator's coarse/fine crossover."""
    from ganforge.families.exports import ExportGraph, latents

    G = nets["G"]

    def zpsi(n: int, seed: int) -> dict[str, torch.Tensor]:
        return {"z": latents(cfg, n, seed), "psi": torch.full((n,), EXAMPLE_PSI)}

    @torch.no_grad()
    def mixed(n: int, seed: int) -> dict[str, torch.Tensor]:
        a, b = (G.broadcast(_Truncated(G)(**zpsi(n, s))) for s in (seed, seed + 1))
        return {"ws": torch.cat([a[:, :G.default_crossover], b[:, G.default_crossover:]], 1).contiguous()}

    return {"generator": ExportGraph(_Full(G), zpsi, "image", "z, truncation psi (N,) -> images in [-1, 1], NCHW"),
            "mapping": ExportGraph(_Truncated(G), zpsi, "w", "z, truncation psi (N,) -> w (N, w_dim)"),
            "synthesis": ExportGraph(_Synthesis(G), mixed, "image",
                                     f"ws (N, {G.num_ws}, w_dim), one w per layer -> images in [-1, 1], NCHW")}


register(Family("stylegan", StyleganConfig, _networks, "ganforge.families.stylegan:StyleganTrainer", convolutional=True,
                style_based=True, exports=_exports,
                train_keys=(*OPTIMIZER_KEYS, "loss", "d_steps", "r1_gamma", "r2_gamma", "r1_every",
                            *ADA_KEYS)))
