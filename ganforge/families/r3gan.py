"""R3GAN (Huang, Gokaslan, Kuleshov, Tompkin, NeurIPS 2024): the relativistic pairing loss with R1 and R2, and a
plain modern ConvNet (``parts/r3gan_nets.py``), with none of StyleGAN's tricks.

The recipe is the family's own (``model.*``), not the train keys of the other families: Adam with beta1 = 0, and
cosine schedules over the run -- or over ``model.schedule_kimg`` thousand images, then held -- for the learning
rate, Adam's beta2, the penalties' gamma, the EMA half-life (in thousands of images) and the probability of ADA's
augmentations (a scheduled p, not ADA's controller), as in the authors' training presets. Every scheduled value is a
pure function of the step, so resume is exact with nothing more to checkpoint.

Phases: ``Dmain`` -- softplus(-(D(x) - D(G(z)))) + gamma/2 (R1 + R2), the penalties every ``model.reg_every``
steps (``Dreg``, weighted by the interval, when that is over 1); ``Gmain`` -- softplus(-(D(G(z)) - D(x))).
"""
from __future__ import annotations

import math
from typing import Literal, Optional

import torch
from pydantic import Field, model_validator
from torch import nn

from ganforge.config_base import ModelBase, check_power_of_two
from ganforge.families import Family, register
from ganforge.families.contract import Batch, Cosine, OptimizerSpec, Phase, StatDict, Trainer
from ganforge.families.parts import losses
from ganforge.families.parts.r3gan_nets import R3Discriminator, R3Generator, reset_r3gan
from ganforge.viz import LossPanels

Pair = tuple[float, float]  # (value at the start, value at the end of its schedule)


class R3ganConfig(ModelBase):
    """R3GAN: inverted-bottleneck ResNets without normalisation, and the schedules of its training recipe."""

    family: Literal["r3gan"] = "r3gan"
    z_dim: int = Field(64, ge=1)  # the authors' noise dimension
    g_width: int = Field(128, ge=1)  # G's channels at the image's resolution, doubling per halving ...
    d_width: int = Field(128, ge=1)  # D's likewise ...
    max_channels: int = Field(128, ge=1)  # ... up to this (g_width = max_channels: the paper's same width everywhere)
    blocks: int = Field(2, ge=1)  # residual blocks per stage
    expansion: int = Field(2, ge=1)  # inverted bottleneck: channels inside a block = width x expansion
    group_channels: int = Field(16, ge=1)  # channels per group of the 3x3 conv (the authors': 16; fewer groups where they do not divide)
    lr: Pair = (2e-4, 5e-5)  # both networks' Adam learning rate, cosine start -> end
    beta2: Pair = (0.9, 0.99)  # Adam's beta2 (beta1 is 0), cosine start -> end
    gamma: Pair = (0.05, 0.005)  # R1 and R2 weight (gamma/2 each), cosine start -> end
    ema_kimg: Pair = (0.0, 5000.0)  # the EMA's half-life in thousands of images (with train.ema.enabled)
    augment_p: Pair = (0.0, 0.0)  # probability of each ADA transform, cosine start -> end; 0 -> 0 is off
    augment_pipe: str = "bgc"  # ADA's transform groups (b: flips/turns/shifts, g: geometric, c: colour)
    schedule_kimg: Optional[float] = Field(None, gt=0)  # the schedules' span; None: the run's whole budget
    reg_every: int = Field(1, ge=1)  # R1 + R2 every k D steps, weighted by k (lazy; the authors': 1)
    # squash G's output with tanh (the paper's is linear): on data with a flat black background (digits, icons) D
    # otherwise tells fakes by their values below -1, which no real pixel has, and wins from the start
    tanh: bool = False

    @model_validator(mode="after")
    def _shape(self) -> "R3ganConfig":
        check_power_of_two(self.image_size, self.family)
        from ganforge.families.parts.ada import parse_pipe

        parse_pipe(self.augment_pipe)
        return self

    def stage_widths(self, net: str) -> list[int]:
        """Channels per stage, 4x4 first (G's order; D is built from the same list reversed)."""
        base = self.g_width if net == "G" else self.d_width
        return [min(self.max_channels, base * self.image_size // 4 // 2 ** i) for i in range(stage_count(self.image_size))]


def stage_count(image_size: int) -> int:
    """Stages from 4x4 to the image: one per resolution."""
    return int(math.log2(image_size)) - 1


def _networks(cfg: R3ganConfig) -> dict[str, nn.Module]:
    G = R3Generator(cfg.z_dim, cfg.stage_widths("G"), cfg.blocks, cfg.expansion, cfg.group_channels, cfg.channels,
                    cfg.tanh)
    D = R3Discriminator(cfg.stage_widths("D")[::-1], cfg.blocks, cfg.expansion, cfg.group_channels, cfg.channels)
    return {"G": G, "D": D}


def _init(cfg: R3ganConfig, nets: dict[str, nn.Module]) -> None:
    """Fix-up (zero last conv per block, scaled others), not DCGAN's N(0, 0.02)."""
    reset_r3gan(nets)


class R3ganTrainer(Trainer):
    """RpGAN + R1 + R2 with the scheduled recipe (see the module docstring)."""

    fake_score_stat = None  # relativistic logits are no probability
    loss_panels = LossPanels(losses=(("loss_d", "D loss"), ("loss_g", "G loss")),
                             scores=(("d_real", "D(x) logit"), ("d_fake", "D(G(z)) logit")))

    def __init__(self, cfg, nets, ctx):
        super().__init__(cfg, nets, ctx)
        self.mc, self.tc = cfg.model, cfg.train
        span = None if self.mc.schedule_kimg is None else max(1, round(self.mc.schedule_kimg * 1000 /
                                                                     self.tc.batch_size))
        self.sched = {k: Cosine(*getattr(self.mc, k), steps=span)
                      for k in ("lr", "beta2", "gamma", "ema_kimg", "augment_p")}
        self.stat_keys = ("loss_d", "loss_g", "d_real", "d_fake", "r1", "r2", "gamma", "augment_p")

    # ------------------------------------------------------------------ declarations

    def optimizers(self) -> dict[str, OptimizerSpec]:
        lr, b2 = self.sched["lr"], self.sched["beta2"]
        return {name: OptimizerSpec((name,), lr.start, kind="adam", betas=(0.0, b2.start), eps=1e-8,
                                    schedules={"lr": lr, "beta2": b2}) for name in ("G", "D")}

    def phases(self) -> list[Phase]:
        out = [Phase("Dmain", "D", ("D",), self.d_main)]
        if self.mc.reg_every > 1:
            out.append(Phase("Dreg", "D", ("D",), self.d_reg, every=self.mc.reg_every))
        out.append(Phase("Gmain", "G", ("G",), self.g_main))
        return out

    def ema_decay(self, step: int) -> Optional[float]:
        """0.5 ** (images per step / half-life): the EMA forgets half of G's past every half-life of images."""
        half_life = self.value("ema_kimg", step) * 1000
        return 0.5 ** (self.tc.batch_size / half_life) if half_life > 0 else 0.0

    def capture_refusal(self) -> Optional[str]:
        return "r3gan's schedules (gamma, augmentation p) are host numbers that change every step"

    # ------------------------------------------------------------------ pieces

    def value(self, name: str, step: int) -> float:
        return self.sched[name](step, self.ctx.total_steps)

    def augment(self, x: torch.Tensor, step: int) -> torch.Tensor:
        p = self.value("augment_p", step)
        if p <= 0:
            return x
        from ganforge.families.parts.ada import augment

        return augment(x, p, self.mc.augment_pipe, self.ctx.world_size, self.ctx.rank)

    def real(self, batch: Batch) -> torch.Tensor:
        return batch[0].to(self.ctx.device, non_blocking=True).contiguous(memory_format=self.ctx.memory_format)

    def fakes(self, n: int, grad: bool) -> torch.Tensor:
        z, _ = self.latents(n)
        with torch.set_grad_enabled(grad):
            return self.nets["G"](z)

    def penalties(self, real: torch.Tensor, fake: torch.Tensor, step: int) -> tuple[torch.Tensor, StatDict]:
        """gamma/2 (R1 + R2) on D's inputs, unweighted by any interval, and the stats."""
        D = self.nets["D"]
        real_in = self.augment(real, step).detach().requires_grad_(True)
        fake_in = self.augment(fake, step).detach().requires_grad_(True)
        with self.ctx.autocast():
            real_logits, fake_logits = D(real_in).float(), D(fake_in).float()
        r1, r2 = losses.r1_penalty(real_logits, real_in), losses.r2_penalty(fake_logits, fake_in)
        gamma = self.value("gamma", step)
        return gamma / 2 * (r1 + r2), {"r1": r1, "r2": r2, "gamma": torch.tensor(gamma, device=self.ctx.device)}

    # ------------------------------------------------------------------ phases

    def d_main(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        D, real = self.nets["D"], self.real(batch)
        with self.ctx.autocast():
            fake = self.fakes(real.shape[0], grad=False)
        inline = self.mc.reg_every == 1
        real_in = self.augment(real, step).detach().requires_grad_(inline)
        fake_in = self.augment(fake, step).detach().requires_grad_(inline)
        with self.ctx.autocast():
            real_logits, fake_logits = D(real_in).float(), D(fake_in).float()
        loss, _ = losses.d_loss(real_logits, fake_logits, "rpgan")
        stats = {"loss_d": loss, "d_real": real_logits.mean(), "d_fake": fake_logits.mean(),
                 "augment_p": torch.tensor(self.value("augment_p", step), device=self.ctx.device)}
        if inline:
            r1, r2 = losses.r1_penalty(real_logits, real_in), losses.r2_penalty(fake_logits, fake_in)
            gamma = self.value("gamma", step)
            loss = loss + gamma / 2 * (r1 + r2)
            stats.update(r1=r1, r2=r2, gamma=torch.tensor(gamma, device=self.ctx.device))
        return loss, stats

    def d_reg(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        """Lazy R1 + R2: the penalties alone on a fresh pair, weighted by their interval (StyleGAN2's trick)."""
        real = self.real(batch)
        with self.ctx.autocast():
            fake = self.fakes(real.shape[0], grad=False)
        penalty, stats = self.penalties(real, fake, step)
        return penalty * self.mc.reg_every, stats

    def g_main(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        D, real = self.nets["D"], self.real(batch)
        with self.ctx.autocast():
            fake_logits = D(self.augment(self.fakes(real.shape[0], grad=True), step)).float()
            with torch.no_grad():  # the paired reals carry no gradient to G
                real_logits = D(self.augment(real, step)).float()
        loss = losses.g_loss(fake_logits, "rpgan", real_logits)
        return loss, {"loss_g": loss}


register(Family("r3gan", R3ganConfig, _networks, "ganforge.families.r3gan:R3ganTrainer", init=_init,
                train_keys=()))
