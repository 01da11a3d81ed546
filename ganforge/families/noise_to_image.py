"""The training of the noise-to-image families (mlp, dcgan, cdcgan): the seeds' GAN and its catalogue of tricks.

Phases (as stylegan2-ada's): ``Dmain`` -- ``train.d_steps`` discriminator updates, each on its own real batch, with
the adversarial loss and, when on, WGAN-GP's penalty, R1 and R2; ``Dreg`` -- R1 and R2 alone every ``train.r1_every``
steps weighted by that interval (lazy regularisation, StyleGAN2), when they are lazy; ``Gmain`` -- one generator
update with the adversarial loss, feature matching, or the unrolled discriminator's loss. The relativistic ``rpgan``
loss pairs the step's reals with its fakes, so ``Gmain`` also shows D the step's real batch (no gradient to D).

With ``train.augment=ada`` every image D sees (``d_input``, and the reals and fakes of WGAN-GP's interpolates) goes
through ADA's pipeline and ``Dmain`` feeds D's real logits to its controller (``families/parts/ada.py``).

Separate real and fake batches go through D (the seeds' way; it matters with BatchNorm). Fakes for D are made
under no_grad (or reused by the G step with ``reuse_fake``); D's weights are frozen during the G step.
Data-parallel: each rank draws the global batch's latents from the shared RNG stream and keeps its slice.
"""
from __future__ import annotations

from typing import Optional

import torch

from ganforge.families.parts import losses
from ganforge.families.parts.ada import AdaTrainer
from ganforge.families.parts.losses import d_loss, g_loss
from ganforge.families import pack_samples, sample_z
from ganforge.families.contract import Batch, Fixed, Phase, StatDict, Trainer

PROBABILITY_LOSSES = ("bce", "minimax")  # D's sigmoid output is a probability: D(x), D(G(z)) are logged as such


class GanTrainer(AdaTrainer, Trainer):
    def __init__(self, cfg, nets, ctx):
        super().__init__(cfg, nets, ctx)
        tc = cfg.train
        self.tc, self.mc = tc, cfg.model
        self.pack = getattr(cfg.model, "pack", 1)
        self.lazy_r1 = (tc.r1_gamma > 0 or tc.r2_gamma > 0) and tc.r1_every > 1  # R1 and R2 share the interval
        self.probabilities = tc.loss in PROBABILITY_LOSSES  # D's outputs read as probabilities
        self.fake_score_stat = "d_fake" if self.probabilities else None
        keys = ["loss_d", "loss_g", "loss_d_real", "loss_d_fake", "d_real", "d_fake"]
        if tc.loss in ("wgan", "wgan-gp"):
            keys.append("wasserstein")
        if tc.gradient_penalty > 0:
            keys += ["gp", "grad_norm"]
        keys += [name for name, gamma in (("r1", tc.r1_gamma), ("r2", tc.r2_gamma)) if gamma > 0]
        if tc.instance_noise > 0:
            keys.append("noise_sigma")
        self.stat_keys = (*keys, *self.ada_stat_keys)
        self._fake: Optional[torch.Tensor] = None  # D's last fakes, for reuse_fake
        self._y_fake: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ declarations

    def phases(self) -> list[Phase]:
        clip = self.tc.clip
        # with reuse_fake, D's step also records G's forward graph for the G step to reuse
        d_main_grads = ("D", "G") if self.tc.reuse_fake else ("D",)
        out = [Phase("Dmain", "D", d_main_grads, self.d_main, repeat=self.tc.d_steps,
                     after_update=(lambda: clip_weights(self.nets["D"], clip)) if clip > 0 else None)]
        if self.lazy_r1:
            out.append(Phase("Dreg", "D", ("D",), self.d_reg, every=self.tc.r1_every))
        out.append(Phase("Gmain", "G", ("G",), self.g_main))
        return out

    def fixed_inputs(self, seed: int, n: int) -> Fixed:
        """Conditional runs follow the seeds' cDCGAN: row k shows class k, the same z in every row."""
        if not self.conditional:
            return super().fixed_inputs(seed, n)
        gen = torch.Generator().manual_seed(seed + 12345)
        k = self.mc.num_classes
        per_class = max(1, n // k)
        z = sample_z(per_class, self.mc, generator=gen).repeat(k, 1)
        return Fixed({"z": z, "y": torch.arange(k).repeat_interleave(per_class)}, per_class, labels_key="y")

    def begin_step(self, step: int) -> None:
        super().begin_step(step)
        self._fake = self._y_fake = None

    def capture_refusal(self) -> Optional[str]:
        """The step is the same device work at every step (z, DiffAugment, WGAN-GP and R1 draw on the device);
        only instance noise's annealed sigma is a host number that changes with the step."""
        if self.tc.instance_noise > 0:
            return "train.instance_noise anneals its sigma on the host step by step, which a graph would freeze"
        return None

    # ------------------------------------------------------------------ pieces

    def real(self, batch: Batch) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        x, y = batch
        x = x.to(self.ctx.device, non_blocking=True)
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.ctx.memory_format)
        return x, (y.to(self.ctx.device) if self.conditional else None)

    def d_input(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """What D sees of a batch: augmented (DiffAugment or ADA), noised (instance noise), packed (PacGAN)."""
        x = self.augment(x)
        if self.tc.diffaugment:
            from ganforge.families.parts.augment import diff_augment

            x = diff_augment(x, self.tc.diffaugment)
        sigma = self.noise_sigma(step)
        if sigma > 0:
            from ganforge.families.parts.noise import add_instance_noise

            x = add_instance_noise(x, sigma)
        return pack_samples(x, self.pack)

    def noise_sigma(self, step: int) -> float:
        if self.tc.instance_noise <= 0:
            return 0.0
        from ganforge.families.parts.noise import instance_noise_sigma

        return instance_noise_sigma(step, self.ctx.total_steps, self.tc.instance_noise, self.tc.instance_noise_steps)

    def d_logits(self, x: torch.Tensor, y: Optional[torch.Tensor], step: int) -> torch.Tensor:
        return self.nets["D"](self.d_input(x, step), y).float()

    def _as_stat(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits).mean() if self.probabilities else logits.mean()

    # ------------------------------------------------------------------ phases

    def d_main(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        G, tc = self.nets["G"], self.tc
        real, y_real = self.real(batch)
        z, y_fake = self.latents(real.shape[0])
        inline_r1, inline_r2 = (gamma > 0 and not self.lazy_r1 for gamma in (tc.r1_gamma, tc.r2_gamma))
        with self.ctx.autocast():
            if tc.reuse_fake:
                self._fake, self._y_fake = G(z, y_fake), y_fake
                fake = self._fake.detach()
            else:
                with torch.no_grad():
                    fake = G(z, y_fake)
            real_in = self.d_input(real, step)
            if inline_r1:
                real_in = real_in.detach().requires_grad_(True)
            real_logits = self.nets["D"](real_in, y_real).float()
            fake_in = self.d_input(fake, step)
            if inline_r2:
                fake_in = fake_in.detach().requires_grad_(True)
            fake_logits = self.nets["D"](fake_in, y_fake).float()
        loss_real, loss_fake = d_loss(real_logits, fake_logits, tc.loss, tc.real_label)
        loss = loss_real + loss_fake
        stats = {"loss_d": loss, "loss_d_real": loss_real, "loss_d_fake": loss_fake,
                 "d_real": self._as_stat(real_logits), "d_fake": self._as_stat(fake_logits),
                 **self.ada_observe(real_logits, fake_logits, tc.loss, tc.real_label)}
        if tc.loss in ("wgan", "wgan-gp"):
            stats["wasserstein"] = real_logits.mean() - fake_logits.mean()
        if tc.gradient_penalty > 0:
            critic = lambda x: self.nets["D"](x, y_real).float()  # noqa: E731
            gp, norm = losses.gradient_penalty(critic, pack_samples(self.augment(real), self.pack),
                                               pack_samples(self.augment(fake), self.pack))
            loss = loss + tc.gradient_penalty * gp
            stats.update(gp=gp, grad_norm=norm)
        if inline_r1:
            r1 = losses.r1_penalty(real_logits, real_in)
            loss = loss + tc.r1_gamma / 2 * r1
            stats["r1"] = r1
        if inline_r2:
            r2 = losses.r2_penalty(fake_logits, fake_in)
            loss = loss + tc.r2_gamma / 2 * r2
            stats["r2"] = r2
        if tc.instance_noise > 0:
            stats["noise_sigma"] = torch.tensor(self.noise_sigma(step), device=self.ctx.device)
        return loss, stats

    def d_reg(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        """Lazy R1 (on the batch's reals) and R2 (on fresh fakes): the penalties alone, weighted by their interval."""
        tc, D = self.tc, self.nets["D"]
        loss, stats = torch.zeros((), device=self.ctx.device), {}
        if tc.r1_gamma > 0:
            real, y_real = self.real(batch)
            with self.ctx.autocast():
                real_in = self.d_input(real, step).detach().requires_grad_(True)
                logits = D(real_in, y_real).float()
            stats["r1"] = losses.r1_penalty(logits, real_in)
            loss = loss + losses.lazy_weight(tc.r1_gamma / 2, tc.r1_every) * stats["r1"]
        if tc.r2_gamma > 0:
            z, y_fake = self.latents(batch[0].shape[0])
            with self.ctx.autocast():
                with torch.no_grad():
                    fake = self.nets["G"](z, y_fake)
                fake_in = self.d_input(fake, step).detach().requires_grad_(True)
                logits = D(fake_in, y_fake).float()
            stats["r2"] = losses.r2_penalty(logits, fake_in)
            loss = loss + losses.lazy_weight(tc.r2_gamma / 2, tc.r1_every) * stats["r2"]
        return loss, stats

    def g_main(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        tc = self.tc
        with self.ctx.autocast():
            fake, y_fake = self._fake, self._y_fake
            if fake is None:
                z, y_fake = self.latents(batch[0].shape[0])
                fake = self.nets["G"](z, y_fake)
            if tc.g_objective == "feature_matching":
                loss = self.feature_matching(batch, fake, y_fake, step)
            elif tc.unrolled_steps > 0:
                loss = self.unrolled_g_loss(batch, fake, y_fake, step)
            else:
                loss = g_loss(self.d_logits(fake, y_fake, step), tc.loss, self.paired_real_logits(batch, step))
        return loss, {"loss_g": loss}

    def paired_real_logits(self, batch: Batch, step: int) -> Optional[torch.Tensor]:
        """D's logits on the step's reals for a relativistic G loss (None for the others): no graph, since the
        reals carry no gradient to G and D does not train in Gmain."""
        if self.tc.loss not in losses.RELATIVISTIC:
            return None
        real, y_real = self.real(batch)
        with torch.no_grad():
            return self.d_logits(real, y_real, step)

    def feature_matching(self, batch: Batch, fake: torch.Tensor, y_fake, step: int) -> torch.Tensor:
        """Salimans et al. 2016: G matches the mean of D's last hidden features on real data."""
        real, y_real = self.real(batch)
        D = self.nets["D"]
        with torch.no_grad():
            _, real_f = D.forward_with_features(self.d_input(real, step), y_real)
        _, fake_f = D.forward_with_features(self.d_input(fake, step), y_fake)
        return losses.feature_matching_loss(real_f.float(), fake_f.float())

    def unrolled_g_loss(self, batch: Batch, fake: torch.Tensor, y_fake, step: int) -> torch.Tensor:
        """Metz et al. 2017: G's loss against D after ``unrolled_steps`` of D's own updates, differentiated through
        them; D's real weights are left as they are (the updates happen on a functional copy)."""
        from ganforge.families.parts.unroll import functional_d, unrolled_parameters

        real, y_real = self.real(batch)
        D, tc = self.nets["D"], self.tc
        real_in = self.d_input(real, step)
        fake_in = self.d_input(fake, step)

        def d_objective(params):
            f = functional_d(D, params)
            lr, lf = d_loss(f(real_in, y_real).float(), f(fake_in, y_fake).float(), tc.loss, tc.real_label)
            return lr + lf

        params = unrolled_parameters(D, d_objective, tc.unrolled_steps, tc.lr_d)
        d_ahead = functional_d(D, params)
        real_logits = d_ahead(real_in, y_real).float().detach() if tc.loss in losses.RELATIVISTIC else None
        return g_loss(d_ahead(fake_in, y_fake).float(), tc.loss, real_logits)


@torch.no_grad()
def clip_weights(net: torch.nn.Module, c: float) -> None:
    """WGAN (Arjovsky et al. 2017): keep the critic's weights in [-c, c] so it stays (roughly) Lipschitz."""
    params = list(net.parameters())
    torch._foreach_clamp_min_(params, -c)
    torch._foreach_clamp_max_(params, c)
