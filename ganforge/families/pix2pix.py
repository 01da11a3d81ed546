"""Pix2Pix (Isola et al. 2017; the seeds' "Pix2Pix and Paired Data"): paired image-to-image translation.

G is a U-Net (``translation_nets.UNetGenerator``: skips between mirror levels, dropout as its only noise); D is a
PatchGAN that judges (input, output) pairs, one logit per patch. G minimises the adversarial loss plus
``l1_lambda`` times the L1 distance to the target; ``gan_weight: 0`` gives the paper's L1-only ablation (no D
phase at all).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ganforge.config_base import TranslationConfig
from ganforge.families import OPTIMIZER_KEYS, Family, register
from ganforge.families.parts.translation_nets import PatchDiscriminator, UNetGenerator
from ganforge.families.contract import Batch, Phase, StatDict
from ganforge.families.image_pairs import TranslationTrainer, adversarial_terms, generator_term


class Pix2pixConfig(TranslationConfig):
    family: Literal["pix2pix"] = "pix2pix"
    g_width: int = Field(64, ge=1)  # ngf
    d_width: int = Field(64, ge=1)  # ndf
    dropout: float = Field(0.5, ge=0.0, lt=1.0)  # in the U-Net's 3 decoder levels after the bottleneck
    l1_lambda: float = Field(100.0, ge=0.0)
    gan_weight: float = Field(1.0, ge=0.0)  # 0: L1 only (the paper's ablation)


class Pix2pixTrainer(TranslationTrainer):
    """Phases: ``Gmain`` (adversarial + L1; keeps its output for D), then ``Dmain`` on (A, B) vs (A, G(A))."""

    stat_keys = ("loss_g", "loss_g_gan", "loss_l1", "loss_d", "d_real", "d_fake")

    def __init__(self, cfg, nets, ctx):
        super().__init__(cfg, nets, ctx)
        if getattr(ctx.dataset, "unpaired", False):
            from ganforge.errors import DataError

            raise DataError(f"pix2pix learns from paired images and --data {cfg.data.spec!r} is unpaired: use "
                            "family cyclegan (e.g. preset cyclegan-thin2thick), or paired:DIR data")

    def phases(self) -> list[Phase]:
        main = [Phase("Gmain", "G", ("G",), self.g_main)]
        if self.cfg.model.gan_weight > 0:
            main.append(Phase("Dmain", "D", ("D",), self.d_main))
        return main

    def g_main(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        mc = self.cfg.model
        a, b = self.halves(batch, step)
        with self.ctx.autocast():
            fake = self.nets["G"](a)
            self.fake = (a, b, fake.detach())
            l1 = F.l1_loss(fake.float(), b.float())
            stats: StatDict = {"loss_l1": l1}
            loss = mc.l1_lambda * l1
            if mc.gan_weight > 0:
                gan = generator_term(self.kind, self.nets["D"](torch.cat([a, fake], 1)).float())
                loss = loss + mc.gan_weight * gan
                stats["loss_g_gan"] = gan
        stats["loss_g"] = loss
        return loss, stats

    def d_main(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        a, b, fake = self.fake
        D = self.nets["D"]
        with self.ctx.autocast():
            real_logits = D(torch.cat([a, b], 1)).float()
            fake_logits = D(torch.cat([a, fake], 1)).float()
        loss = adversarial_terms(self.kind, real_logits, fake_logits)
        return loss, {"loss_d": loss, "d_real": torch.sigmoid(real_logits).mean(),
                      "d_fake": torch.sigmoid(fake_logits).mean()}


def _networks(cfg: Pix2pixConfig) -> dict[str, nn.Module]:
    return {"G": UNetGenerator(cfg.channels, cfg.image_size, cfg.g_width, cfg.norm, cfg.dropout),
            "D": PatchDiscriminator(2 * cfg.channels, cfg.d_width, cfg.d_layers, cfg.norm)}


register(Family("pix2pix", Pix2pixConfig, _networks, "ganforge.families.pix2pix:Pix2pixTrainer", translation=True,
                directions={"AtoB": "G"}, train_keys=(*OPTIMIZER_KEYS, "loss")))  # one direction: the data's (data.direction)
