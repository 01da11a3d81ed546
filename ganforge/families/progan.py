"""ProGAN (Karras et al. 2018, "Progressive Growing of GANs for Improved Quality, Stability, and Variation").

Training starts at ``start_size`` (4x4) and doubles the resolution stage by stage up to ``image_size``. Every new
block is faded in: while alpha ramps linearly from 0 to 1 over ``fade_images`` real images, G's output is
``lerp(upsample(toRGB_prev(h)), toRGB_new(block(h)), alpha)`` and D mirrors it (``lerp(fromRGB_prev(downscale(x)),
block(fromRGB_new(x)), alpha)``); then the stage trains ``stable_images`` images with the block fully in. The first
stage has only its stable phase. Real images are shown at the current resolution and, during a fade-in, blended the
same way as G's output, so D never tells real from fake by sharpness alone.

The networks are the paper's: equalized learning rate everywhere (``families/parts/equalized.py``), pixelwise feature
normalisation after every conv of G and on z, LeakyReLU 0.2, nearest-neighbour upsampling and average pooling,
1x1 toRGB / fromRGB per resolution, the minibatch standard-deviation layer before D's last block, and a linear
output (the loss is WGAN-GP with the drift term). Widths: the channels at resolution r are
``min(max_channels, width * image_size / r)`` with ``width`` = ``g_width`` for G and ``d_width`` for D, i.e. the
width at the final resolution, doubling each halving (the paper's fmap_base 8192, fmap_max 512 at 128 px is
``g_width=d_width=128, max_channels=512``).

Every block is built at init, so the optimizers hold every parameter from the first step; blocks not in use yet
get no gradient, and Adam starts their moments when they first do (as the paper resets its optimizer at each
growth). G and D hold the growth as buffers ``stage`` (index of the current resolution, 0 = start_size) and
``alpha`` (weight of the newest block): they are checkpointed with the weights and copied into the EMA generator
with its other buffers, so sampling, evaluation and ``ganforge sample`` see the stage the run reached.
``G(z)`` returns the image at the FINAL size (the current stage's output upscaled by nearest neighbour and clipped
to [-1, 1], as the paper exports images), so sample grids, the progression GIF and the metrics work unchanged and
show the growth; training uses ``G.at_stage(z, ...)``, the current-resolution image with its linear output.

The growth is a pure function of the images shown (``growth``), and the images shown a pure function of the step
(``GrowthSchedule.images_at_step``, with the per-resolution batch sizes), so a resumed or rolled-back run is at
exactly the stage and alpha a straight run is at.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from ganforge.families.parts import losses
from ganforge.families.parts.ada import AdaTrainer
from ganforge.config_base import ModelBase, check_power_of_two
from ganforge.families import ADA_KEYS, OPTIMIZER_KEYS, Family, register
from ganforge.families.parts.equalized import (SQRT2, EqualizedConv2d, EqualizedLinear, PixelNorm, channels_at, downscale_to,
                                       upscale_to)
from ganforge.families.parts.layers import MinibatchStdDev
from ganforge.families.contract import Batch, Phase, StatDict, Trainer


class ProganConfig(ModelBase):
    """Progressive growing: the schedule, the per-resolution batch sizes, the networks' widths."""

    family: Literal["progan"] = "progan"
    z_dim: int = Field(512, ge=1)  # the paper's latent: 512, normalised to the unit hypersphere (pixel norm on z)
    g_width: int = Field(128, ge=1)  # G's channels at the final resolution, doubling each halving ...
    d_width: int = Field(128, ge=1)  # ... D's likewise ...
    max_channels: int = Field(512, ge=1)  # ... up to this many (the paper's fmap_max)
    batch_norm: bool = False  # ProGAN normalises with pixel norm; BatchNorm is not offered
    start_size: int = Field(4, ge=4)  # first resolution (a power of two below image_size)
    fade_images: int = Field(800_000, ge=0)  # real images over which each new block fades in (alpha 0 -> 1)
    stable_images: int = Field(800_000, ge=1)  # real images each resolution then trains with its block fully in
    batch_sizes: dict[int, int] = {}  # resolution -> real images per D step (<= train.batch_size); unset: batch_size
    drift: float = Field(1e-3, ge=0.0)  # drift penalty eps * E[D(x)^2] on reals
    minibatch_std: int = Field(4, ge=0)  # group size of D's minibatch standard-deviation layer; 0 = off
    pixel_norm: bool = True  # pixelwise feature normalisation in G (after every conv, and on z)

    @model_validator(mode="after")
    def _sizes(self) -> "ProganConfig":
        check_power_of_two(self.image_size, self.family)
        if self.start_size & (self.start_size - 1) or self.start_size >= self.image_size:
            raise ValueError(f"start_size={self.start_size} must be a power of two below image_size="
                             f"{self.image_size}")
        if self.batch_norm:
            raise ValueError("batch_norm=true: ProGAN normalises G with pixel norm (model.pixel_norm) and D not at "
                             "all; leave batch_norm false")
        for res, batch in self.batch_sizes.items():
            if res < self.start_size or res & (res - 1):
                raise ValueError(f"batch_sizes: resolution {res} is not a power of two from start_size="
                                 f"{self.start_size}")
            if batch < 1:
                raise ValueError(f"batch_sizes[{res}]={batch} must be >= 1")
        return self

    def check_run(self, run: Any) -> None:
        """Against the run's train section: the loop loads train.batch_size real images a step and ProGAN uses
        the first batch_sizes[res] of them, so none may be larger."""
        for res, batch in sorted(self.batch_sizes.items()):
            if res <= self.image_size and batch > run.train.batch_size:
                raise ValueError(f"model.batch_sizes[{res}]={batch} exceeds train.batch_size="
                                 f"{run.train.batch_size}: every step loads train.batch_size real images and "
                                 f"uses the first batch_sizes[res]; raise train.batch_size or lower this one")

    @property
    def resolutions(self) -> tuple[int, ...]:
        n = int(math.log2(self.image_size // self.start_size)) + 1
        return tuple(self.start_size * 2 ** s for s in range(n))


# ---------------------------------------------------------------------------------------------------- schedule


def growth(images: int, n_stages: int, fade_images: int, stable_images: int) -> tuple[int, float]:
    """(stage, alpha) after ``images`` real images: stage 0 trains ``stable_images``; every later stage fades in
    over ``fade_images`` (alpha rising linearly from 0) then trains ``stable_images``; the last stage stays."""
    if images < stable_images or n_stages == 1:
        return 0, 1.0
    period = fade_images + stable_images
    stage = 1 + (images - stable_images) // period
    if stage >= n_stages:
        return n_stages - 1, 1.0
    into = images - stable_images - (stage - 1) * period
    return stage, (min(1.0, into / fade_images) if fade_images else 1.0)


@dataclass(frozen=True)
class GrowthSchedule:
    """The growth of one run: its resolutions, phase lengths, and the real images each step uses per stage."""

    resolutions: tuple[int, ...]
    fade_images: int
    stable_images: int
    step_images: tuple[int, ...]  # real images one step shows D at each stage (batch size x train.d_steps)

    @classmethod
    def of(cls, cfg) -> "GrowthSchedule":
        mc, tc = cfg.model, cfg.train
        batches = tuple(mc.batch_sizes.get(r, tc.batch_size) for r in mc.resolutions)
        return cls(mc.resolutions, mc.fade_images, mc.stable_images, tuple(b * tc.d_steps for b in batches))

    def progress(self, images: int) -> tuple[int, float]:
        return growth(images, len(self.resolutions), self.fade_images, self.stable_images)

    def stage_end(self, stage: int) -> float:
        """Images at which ``stage`` (its fade-in and stable phase) is over; inf for the last."""
        if stage == len(self.resolutions) - 1:
            return math.inf
        return self.stable_images + stage * (self.fade_images + self.stable_images)

    def images_at_step(self, step: int) -> int:
        """Real images shown before ``step``: each step shows its stage's ``step_images``; a step that crosses a
        stage's end still counts its own stage's, and the next stage starts from there."""
        images = done = 0
        for stage, per_step in enumerate(self.step_images):
            end = self.stage_end(stage)
            steps = step - done if end == math.inf else max(0, math.ceil((end - images) / per_step))
            if done + steps >= step:
                return images + (step - done) * per_step
            images, done = images + steps * per_step, done + steps
        return images  # not reached: the last stage never ends


# ---------------------------------------------------------------------------------------------------- networks


def conv_act(c_in: int, c_out: int, kernel: int, pixel_norm: bool) -> list[nn.Module]:
    """Equalized conv + LeakyReLU(0.2) [+ pixel norm]: every conv layer of both networks."""
    layers: list[nn.Module] = [EqualizedConv2d(c_in, c_out, kernel), nn.LeakyReLU(0.2)]
    return layers + [PixelNorm()] if pixel_norm else layers


class _Growing(nn.Module):
    """The growth state both networks carry as buffers (checkpointed, copied into the EMA generator)."""

    def __init__(self, cfg: ProganConfig):
        super().__init__()
        self.resolutions = cfg.resolutions
        self.image_size = cfg.image_size
        self.register_buffer("stage", torch.zeros((), dtype=torch.long))
        self.register_buffer("alpha", torch.ones(()))

    @torch.no_grad()
    def set_progress(self, stage: int, alpha: float) -> None:
        """Set the buffers (fills on the device, no host sync)."""
        if not 0 <= stage < len(self.resolutions):
            raise ValueError(f"stage {stage} is outside 0..{len(self.resolutions) - 1}")
        self.stage.fill_(stage)
        self.alpha.fill_(alpha)

    def _progress(self, stage: Optional[int], alpha: Optional[float]) -> tuple[int, float]:
        """The stage and alpha given, else the buffers' (read on the host: fine when sampling, and training
        passes its own)."""
        return (int(self.stage) if stage is None else stage), (float(self.alpha) if alpha is None else alpha)


class ProganGenerator(_Growing):
    def __init__(self, cfg: ProganConfig):
        super().__init__(cfg)
        ch = [channels_at(r, cfg.image_size, cfg.g_width, cfg.max_channels) for r in self.resolutions]
        s0, pn = cfg.start_size, cfg.pixel_norm
        self.z_norm = PixelNorm() if pn else nn.Identity()
        self.start_channels = ch[0]
        # z -> the start map: the paper's dense layer (a 4x4 transposed conv on 1x1), gain sqrt(2)/4
        self.project = EqualizedLinear(cfg.z_dim, ch[0] * s0 * s0, gain=SQRT2 / 4)
        self.start_act = nn.Sequential(nn.LeakyReLU(0.2), PixelNorm() if pn else nn.Identity())
        blocks = [nn.Sequential(*conv_act(ch[0], ch[0], 3, pn))]
        for s in range(1, len(ch)):
            blocks.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                        *conv_act(ch[s - 1], ch[s], 3, pn), *conv_act(ch[s], ch[s], 3, pn)))
        self.blocks = nn.ModuleList(blocks)
        self.to_rgb = nn.ModuleList(EqualizedConv2d(c, cfg.channels, 1, gain=1.0) for c in ch)

    def _start(self, z: torch.Tensor) -> torch.Tensor:
        s0 = self.resolutions[0]
        h = self.project(self.z_norm(z.flatten(1))).view(z.shape[0], self.start_channels, s0, s0)
        return self.blocks[0](self.start_act(h))

    def at_stage(self, z: torch.Tensor, y: Optional[torch.Tensor] = None, stage: Optional[int] = None,
                 alpha: Optional[float] = None) -> torch.Tensor:
        """The image at the stage's resolution (linear output); stage/alpha default to the buffers'."""
        stage, alpha = self._progress(stage, alpha)
        h = self._start(z)
        for s in range(1, stage):
            h = self.blocks[s](h)
        if stage == 0:
            return self.to_rgb[0](h)
        new = self.to_rgb[stage](self.blocks[stage](h))
        if alpha >= 1.0:
            return new
        old = upscale_to(self.to_rgb[stage - 1](h), new.shape[-1])
        return torch.lerp(old, new, alpha)  # alpha 0: exactly the previous stage's image, upsampled

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The image at the final size: the current stage's, upscaled (nearest) and clipped to [-1, 1]."""
        return upscale_to(self.at_stage(z).clamp(-1.0, 1.0), self.image_size)


class ProganDiscriminator(_Growing):
    def __init__(self, cfg: ProganConfig):
        super().__init__(cfg)
        ch = [channels_at(r, cfg.image_size, cfg.d_width, cfg.max_channels) for r in self.resolutions]
        self.from_rgb = nn.ModuleList(nn.Sequential(EqualizedConv2d(cfg.channels, c, 1), nn.LeakyReLU(0.2))
                                      for c in ch)
        blocks: list[nn.Module] = [nn.Identity()]  # stage 0 has no down block: the head follows fromRGB
        for s in range(1, len(ch)):
            blocks.append(nn.Sequential(*conv_act(ch[s], ch[s], 3, False), *conv_act(ch[s], ch[s - 1], 3, False),
                                        nn.AvgPool2d(2)))
        self.blocks = nn.ModuleList(blocks)
        self.head = self._head(ch[0], cfg.start_size, cfg.minibatch_std)

    def d_blocks(self) -> list[nn.Module]:
        """D's blocks from the image side, for train.freeze_d (FreezeD): each resolution's fromRGB and down block, from the
        largest; then stage 0's fromRGB. The head stays trainable."""
        last = len(self.blocks) - 1
        return [*(nn.Sequential(self.from_rgb[s], self.blocks[s]) for s in range(last, 0, -1)), self.from_rgb[0]]

    @staticmethod
    def _head(c: int, size: int, group: int) -> nn.Sequential:
        """[minibatch std] -> 3x3 conv -> dense to c -> dense to one logit (gain 1, linear)."""
        pre: list[nn.Module] = [MinibatchStdDev(group)] if group else []
        return nn.Sequential(*pre, *conv_act(c + (1 if group else 0), c, 3, False), nn.Flatten(),
                             EqualizedLinear(c * size * size, c), nn.LeakyReLU(0.2), EqualizedLinear(c, 1, gain=1.0))

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None, stage: Optional[int] = None,
                alpha: Optional[float] = None) -> torch.Tensor:
        """Logits (N,) of images at the stage's resolution or larger (downscaled to it first)."""
        stage, alpha = self._progress(stage, alpha)
        res = self.resolutions[stage]
        x = downscale_to(x, res)
        h = self.from_rgb[stage](x)
        if stage > 0:
            h = self.blocks[stage](h)
            if alpha < 1.0:  # alpha 0: exactly the previous stage's D on the downscaled image
                h = torch.lerp(self.from_rgb[stage - 1](downscale_to(x, res // 2)), h, alpha)
            for s in range(stage - 1, 0, -1):
                h = self.blocks[s](h)
        return self.head(h).reshape(-1)


def _networks(cfg: ProganConfig) -> dict[str, nn.Module]:
    return {"G": ProganGenerator(cfg), "D": ProganDiscriminator(cfg)}


# ---------------------------------------------------------------------------------------------------- training


class ProganTrainer(AdaTrainer, Trainer):
    """Phases ``Dmain`` (the adversarial loss -- WGAN-GP in the presets -- + gradient penalty + drift) and
    ``Gmain``, at the stage and alpha the schedule gives for this step.

    Per-resolution batch: the loop loads ``train.batch_size`` real images a step and this trainer uses the first
    ``model.batch_sizes[res]`` of them (and as many latents). In a data-parallel run both numbers are global: each
    rank takes the first ``batch_sizes[res] / world_size`` of its own slice of the global batch.

    With ``train.augment=ada`` the images D sees (at the current resolution, after the fade-in blend) go through
    ADA's pipeline, and the gradient penalty is taken between the augmented reals and fakes.
    """

    fake_score_stat = None  # a WGAN critic's logits are no probabilities

    def __init__(self, cfg, nets, ctx):
        super().__init__(cfg, nets, ctx)
        self.mc, self.tc = cfg.model, cfg.train
        self.schedule = GrowthSchedule.of(cfg)
        keys = ["loss_d", "loss_g", "wasserstein", "drift"]
        if self.tc.gradient_penalty > 0:
            keys += ["gp", "grad_norm"]
        self.stat_keys = (*keys, "resolution", "alpha", *self.ada_stat_keys)
        self.steps_begun = 0
        self.stage, self.alpha = 0, 1.0

    def phases(self) -> list[Phase]:
        return [Phase("Dmain", "D", ("D",), self.d_main, repeat=self.tc.d_steps),
                Phase("Gmain", "G", ("G",), self.g_main)]

    # ------------------------------------------------------------------ growth

    def begin_step(self, step: int) -> None:
        """Stage and alpha of this step, from the images shown before it; into both networks' buffers."""
        super().begin_step(step)
        self.stage, self.alpha = self.schedule.progress(self.schedule.images_at_step(step))
        self.steps_begun = step + 1
        for name in ("G", "D"):
            self.nets[name].set_progress(self.stage, self.alpha)

    @property
    def resolution(self) -> int:
        return self.schedule.resolutions[self.stage]

    @property
    def batch(self) -> int:
        """This rank's real images (and fakes) per update at the current stage."""
        global_batch = self.schedule.step_images[self.stage] // self.tc.d_steps
        return max(1, global_batch // self.ctx.world_size)

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Where the growth stands after the last step (also in G's and D's buffers): for people and tools."""
        images = self.schedule.images_at_step(self.steps_begun)
        stage, alpha = self.schedule.progress(images)
        tensors, meta = super().extra_state()  # ADA's, when on
        return tensors, {**meta, "steps": self.steps_begun, "images_seen": images, "stage": stage, "alpha": alpha,
                         "resolution": self.schedule.resolutions[stage]}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        super().load_extra_state(tensors, meta)
        self.steps_begun = int(meta.get("steps", 0))
        self.stage, self.alpha = self.schedule.progress(self.schedule.images_at_step(self.steps_begun))

    # ------------------------------------------------------------------ pieces

    def real(self, batch: Batch) -> torch.Tensor:
        """The first ``batch`` real images at the current resolution, blended like G's output in a fade-in."""
        x = batch[0][: self.batch].to(self.ctx.device, non_blocking=True)
        res = self.resolution
        x = downscale_to(x, res)
        if self.stage > 0 and self.alpha < 1.0:
            x = torch.lerp(upscale_to(downscale_to(x, res // 2), res), x, self.alpha)
        return x.contiguous(memory_format=self.ctx.memory_format)

    def d_logits(self, x: torch.Tensor) -> torch.Tensor:
        """D at the current stage; ADA (when on) is applied by the callers, so the penalty sees augmented images."""
        return self.nets["D"](x, None, self.stage, self.alpha).float()

    def fake(self, n: int) -> torch.Tensor:
        z, _ = self.latents(n)
        return self.nets["G"].at_stage(z, None, self.stage, self.alpha)

    def growth_stats(self) -> StatDict:
        """Resolution and alpha from G's buffers: device tensors, no host sync."""
        G = self.nets["G"]
        return {"resolution": self.mc.start_size * torch.exp2(G.stage.float()), "alpha": G.alpha.detach().clone()}

    # ------------------------------------------------------------------ phases

    def d_main(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        tc = self.tc
        real = self.real(batch)
        with self.ctx.autocast():
            with torch.no_grad():
                fake = self.augment(self.fake(real.shape[0]))
            real = self.augment(real)
            real_logits, fake_logits = self.d_logits(real), self.d_logits(fake)
        loss_real, loss_fake = losses.d_loss(real_logits, fake_logits, tc.loss, tc.real_label)
        drift = losses.drift_penalty(real_logits, self.mc.drift)
        loss = loss_real + loss_fake + drift
        stats = {"loss_d": loss_real + loss_fake, "wasserstein": real_logits.mean() - fake_logits.mean(),
                 "drift": drift, **self.growth_stats(),
                 **self.ada_observe(real_logits, fake_logits, tc.loss, tc.real_label)}
        if tc.gradient_penalty > 0:
            gp, norm = losses.gradient_penalty(self.d_logits, real, fake)
            loss = loss + tc.gradient_penalty * gp
            stats.update(gp=gp, grad_norm=norm)
        return loss, stats

    def g_main(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        with self.ctx.autocast():
            real_logits = None
            if self.tc.loss in losses.RELATIVISTIC:  # rpgan pairs the fakes with this step's reals
                with torch.no_grad():
                    real_logits = self.d_logits(self.augment(self.real(batch)))
            loss = losses.g_loss(self.d_logits(self.augment(self.fake(self.batch))), self.tc.loss, real_logits)
        return loss, {"loss_g": loss}


class _AtItsStage(nn.Module):
    """``G(z)`` with the stage and fade-in read once, as Python numbers: the graph is the generator as it samples now
    (the final stage for a finished run), with no read of a buffer on the host inside it."""

    def __init__(self, G: ProganGenerator):
        super().__init__()
        self.G = G
        self.stage, self.alpha = G._progress(None, None)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        img = self.G.at_stage(z, stage=self.stage, alpha=self.alpha).clamp(-1.0, 1.0)
        factor = self.G.image_size // self.G.resolutions[self.stage]  # a number, not a traced shape
        return (img if factor == 1 else F.interpolate(img, scale_factor=factor, mode="nearest")).float()


def _exports(cfg: ProganConfig, nets: dict[str, nn.Module]) -> dict:
    from ganforge.families.exports import ExportGraph, noise_graph

    graph = noise_graph(cfg, nets["G"])
    stage = _AtItsStage(nets["G"])
    size = stage.G.resolutions[stage.stage]
    return {"generator": ExportGraph(stage, graph.example, graph.output,
                                     f"z -> images in [-1, 1], NCHW (stage {stage.stage}: {size}x{size} shown at "
                                     f"{cfg.image_size}x{cfg.image_size}, fade-in alpha {stage.alpha:g})")}


register(Family("progan", ProganConfig, _networks, "ganforge.families.progan:ProganTrainer", exports=_exports,
                train_keys=(*OPTIMIZER_KEYS, "loss", "real_label", "d_steps", "gp_lambda", *ADA_KEYS)))
