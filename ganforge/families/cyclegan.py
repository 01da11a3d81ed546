"""CycleGAN (Zhu et al. 2017; the seeds' "CycleGAN and Unpaired Data"): unpaired translation between domains.

Two ResNet generators, ``G_AB`` (A -> B) and ``G_BA``, and two PatchGAN discriminators, ``D_A`` (real A vs
G_BA(B)) and ``D_B`` (real B vs G_AB(A)). The generators minimise the least-squares adversarial loss, the cycle
loss ``cycle_lambda`` x (|G_BA(G_AB(a)) - a| + |G_AB(G_BA(b)) - b|) and the identity loss ``identity`` x
``cycle_lambda`` x (|G_AB(b) - b| + |G_BA(a) - a|). The discriminators learn from a history of 50 generated
images each (``ImagePool``), checkpointed with the run.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ganforge.config_base import TranslationConfig
from ganforge.families import OPTIMIZER_KEYS, Family, register
from ganforge.families.parts.translation_nets import PatchDiscriminator, ResnetGenerator
from ganforge.families.contract import Batch, Fixed, OptimizerSpec, Phase, StatDict
from ganforge.families.parts.image_pool import ImagePool
from ganforge.families.image_pairs import TranslationTrainer, adversarial_terms, generator_term


class CycleganConfig(TranslationConfig):
    family: Literal["cyclegan"] = "cyclegan"
    norm: Literal["batch", "instance"] = "instance"
    g_width: int = Field(64, ge=1)  # ngf
    d_width: int = Field(64, ge=1)  # ndf
    g_blocks: int = Field(9, ge=1)  # residual blocks: 9 for 256 px, 6 for 128 px in the paper
    g_downsample: int = Field(2, ge=0, le=4)  # stride-2 levels before the blocks (2 in the paper)
    cycle_lambda: float = Field(10.0, ge=0.0)
    identity: float = Field(0.5, ge=0.0)  # identity loss weight, in units of cycle_lambda
    pool_size: int = Field(50, ge=0)  # generated images each D remembers; 0: no history


class CycleganTrainer(TranslationTrainer):
    """Phases: ``Gmain`` (both generators: adversarial + cycle + identity), ``Dmain`` (both discriminators on
    real images and pooled fakes)."""

    stat_keys = ("loss_g", "loss_g_gan", "loss_cycle", "loss_identity", "loss_d", "d_real", "d_fake")
    ema_networks = ("G_AB", "G_BA")

    def __init__(self, cfg, nets, ctx):
        super().__init__(cfg, nets, ctx)
        seed = cfg.train.seed * 7_919 + ctx.rank
        self.pools = {"A": ImagePool(cfg.model.pool_size, seed), "B": ImagePool(cfg.model.pool_size, seed + 1)}

    def optimizers(self) -> dict[str, OptimizerSpec]:
        tc = self.cfg.train
        return {"G": OptimizerSpec(("G_AB", "G_BA"), tc.lr_g), "D": OptimizerSpec(("D_A", "D_B"), tc.lr_d)}

    def phases(self) -> list[Phase]:
        return [Phase("Gmain", "G", ("G_AB", "G_BA"), self.g_main), Phase("Dmain", "D", ("D_A", "D_B"), self.d_main)]

    def g_main(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        mc, n = self.cfg.model, self.nets
        a, b = self.halves(batch, step)
        with self.ctx.autocast():
            fake_b, fake_a = n["G_AB"](a), n["G_BA"](b)
            gan = (generator_term(self.kind, n["D_B"](fake_b).float())
                   + generator_term(self.kind, n["D_A"](fake_a).float()))
            cycle = F.l1_loss(n["G_BA"](fake_b).float(), a.float()) + F.l1_loss(n["G_AB"](fake_a).float(), b.float())
            loss = gan + mc.cycle_lambda * cycle
            stats: StatDict = {"loss_g_gan": gan, "loss_cycle": cycle}
            if mc.identity > 0:
                same = F.l1_loss(n["G_AB"](b).float(), b.float()) + F.l1_loss(n["G_BA"](a).float(), a.float())
                loss = loss + mc.identity * mc.cycle_lambda * same
                stats["loss_identity"] = same
        self.step_images = (a, b, fake_a.detach(), fake_b.detach())
        stats["loss_g"] = loss
        return loss, stats

    def d_main(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        a, b, fake_a, fake_b = self.step_images
        fake_a, fake_b = self.pools["A"].query(fake_a), self.pools["B"].query(fake_b)
        D_A, D_B = self.nets["D_A"], self.nets["D_B"]
        with self.ctx.autocast():
            logits = {"A": (D_A(a).float(), D_A(fake_a).float()), "B": (D_B(b).float(), D_B(fake_b).float())}
        loss = sum(adversarial_terms(self.kind, real, fake) for real, fake in logits.values())
        return loss, {"loss_d": loss, "d_real": torch.stack([r.mean() for r, _ in logits.values()]).mean(),
                      "d_fake": torch.stack([f.mean() for _, f in logits.values()]).mean()}

    def third_column(self, fake: torch.Tensor, fixed: Fixed) -> torch.Tensor:
        """Unpaired data have no target: the cycle reconstruction G_BA(G_AB(a)) instead."""
        return self.nets["G_BA"](fake.to(self.ctx.device)).float().cpu()

    def extra_state(self):
        tensors, meta = {}, {}
        for name, pool in self.pools.items():
            t, m = pool.state()
            tensors.update({f"pool_{name}.{k}": v for k, v in t.items()})
            meta[f"pool_{name}"] = m
        return tensors, meta

    def load_extra_state(self, tensors, meta) -> None:
        for name, pool in self.pools.items():
            prefix = f"pool_{name}."
            pool.load_state({k[len(prefix):]: v.to(self.ctx.device) for k, v in tensors.items()
                             if k.startswith(prefix)}, meta.get(f"pool_{name}", {}))


def _networks(cfg: CycleganConfig) -> dict[str, nn.Module]:
    def g() -> nn.Module:
        return ResnetGenerator(cfg.channels, cfg.g_width, cfg.g_blocks, cfg.norm, cfg.g_downsample)

    def d() -> nn.Module:
        return PatchDiscriminator(cfg.channels, cfg.d_width, cfg.d_layers, cfg.norm)

    return {"G_AB": g(), "G_BA": g(), "D_A": d(), "D_B": d()}


register(Family("cyclegan", CycleganConfig, _networks, "ganforge.families.cyclegan:CycleganTrainer",
                generator="G_AB", translation=True, directions={"AtoB": "G_AB", "BtoA": "G_BA"},
                train_keys=(*OPTIMIZER_KEYS, "loss")))
