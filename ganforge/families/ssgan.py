"""Semi-supervised GAN (Salimans et al. 2016; the seeds' "Semi-Supervised Learning" section).

The discriminator is a classifier with K logits l_1..l_K; "fake" is an implicit (K+1)-th class whose logit is fixed
at 0, so D(x) = P(real | x) = Z(x) / (Z(x) + 1) with Z(x) = sum_k exp(l_k): the real/fake logit is
logsumexp(l). D learns from the few labelled images (cross-entropy over the K classes) and from every unlabelled
image and every fake (real vs fake through that logit); G trains by feature matching on D's last hidden layer.
The generator is the DCGAN generator; the discriminator is convolutional with dropout and global average pooling.
"""
from __future__ import annotations

from typing import Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ganforge.config_base import ModelBase, check_power_of_two
from ganforge.families.parts.ada import AdaTrainer
from ganforge.families.parts.layers import blocks_from
from ganforge.families.parts.losses import feature_matching_loss
from ganforge.families import ADA_KEYS, OPTIMIZER_KEYS, Family, register
from ganforge.families.dcgan import DCGANGenerator
from ganforge.families.contract import Batch, Phase, StatDict, Trainer


class SsganConfig(ModelBase):
    """DCGAN generator, K-class discriminator."""

    family: Literal["ssgan"] = "ssgan"
    arch: Literal["conv", "mlp"] = "conv"  # mlp: Salimans et al.'s MNIST networks; conv: for SVHN / CIFAR
    num_classes: int = Field(10, ge=2)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)  # conv D (its input gets dropout / 2.5), as in Salimans et al.'s nets
    input_noise: float = Field(0.3, ge=0.0)  # mlp D: Gaussian noise std on its input, in [0, 1] pixel units
    d_noise: float = Field(0.5, ge=0.0)  # mlp D: Gaussian noise std after every hidden layer
    unsupervised_weight: float = Field(0.5, ge=0.0)  # weight of D's real-vs-fake loss (0.5 in Salimans et al.'s code)
    g_input: Literal["convt", "linear"] = "convt"  # as for dcgan
    bias: bool = False  # G's conv biases

    @model_validator(mode="after")
    def _size(self) -> "SsganConfig":
        if self.arch == "conv":
            check_power_of_two(self.image_size, self.family)
        return self


def _conv(c_in: int, c_out: int, stride: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


class SemiSupervisedDiscriminator(nn.Module):
    """3x3 convs halving the size down to 8x8, dropout between stages, global average pooling, K class logits."""

    def __init__(self, cfg: SsganConfig):
        super().__init__()
        w = cfg.d_width
        layers: list[nn.Module] = [nn.Dropout(cfg.dropout / 2.5), *_conv(cfg.channels, w, 1, False)]
        c, size = w, cfg.image_size
        while size > 8:
            layers += [*_conv(c, 2 * c, 2, cfg.batch_norm), *_conv(2 * c, 2 * c, 1, cfg.batch_norm),
                       nn.Dropout(cfg.dropout)]
            c, size = 2 * c, size // 2
        layers += _conv(c, c, 1, cfg.batch_norm)
        self.features = nn.Sequential(*layers)
        self.classes = nn.Linear(c, cfg.num_classes)

    def d_blocks(self) -> list[nn.Module]:
        """D's blocks from the image side, for train.freeze_d (FreezeD): one per conv2d layer; the class
        logits stay trainable."""
        return blocks_from(self.features, (nn.Conv2d,))

    def forward_with_features(self, x: torch.Tensor, y: Optional[torch.Tensor] = None):
        """Real/fake logit (logsumexp of the class logits) and the pooled features."""
        h = self.features(x).mean(dim=(2, 3))
        return torch.logsumexp(self.classes(h).float(), dim=1), h

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.classes(self.features(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.forward_with_features(x)[0]


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise while training: Salimans et al.'s regulariser for the MLP discriminator."""

    def __init__(self, std: float):
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.std * torch.randn_like(x) if self.training and self.std > 0 else x


class MlpSemiSupervisedDiscriminator(nn.Module):
    """Salimans et al.'s MNIST D: weight-normalised 4w-2w-w-w-w ReLU layers, Gaussian noise before each, K logits."""

    def __init__(self, cfg: SsganConfig):
        super().__init__()
        w = cfg.d_width
        widths = [cfg.channels * cfg.image_size ** 2, 4 * w, 2 * w, w, w, w]
        layers: list[nn.Module] = [GaussianNoise(cfg.input_noise)]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [weight_norm(nn.Linear(a, b)), nn.ReLU(), GaussianNoise(cfg.d_noise)]
        self.features = nn.Sequential(*layers)
        self.classes = weight_norm(nn.Linear(w, cfg.num_classes))

    def d_blocks(self) -> list[nn.Module]:
        """D's blocks from the image side, for train.freeze_d (FreezeD): one per linear layer; the class
        logits stay trainable."""
        return blocks_from(self.features, (nn.Linear,))

    def forward_with_features(self, x: torch.Tensor, y: Optional[torch.Tensor] = None):
        h = self.features((x.flatten(1) + 1) / 2)  # their pixels are in [0, 1], ours in [-1, 1]
        return torch.logsumexp(self.classes(h).float(), dim=1), h

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.classes(self.features((x.flatten(1) + 1) / 2))

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.forward_with_features(x)[0]


class MlpSemiSupervisedGenerator(nn.Module):
    """Salimans et al.'s MNIST G: z -> g_width -> g_width (softplus, BatchNorm) -> pixels (weight-normalised, tanh)."""

    def __init__(self, cfg: SsganConfig):
        super().__init__()
        w, self.shape = cfg.g_width, (cfg.channels, cfg.image_size, cfg.image_size)
        self.net = nn.Sequential(nn.Linear(cfg.z_dim, w, bias=False), nn.BatchNorm1d(w), nn.Softplus(),
                                 nn.Linear(w, w, bias=False), nn.BatchNorm1d(w), nn.Softplus(),
                                 weight_norm(nn.Linear(w, int(np.prod(self.shape)))), nn.Tanh())

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.net(z.flatten(1)).view(z.shape[0], *self.shape)


def real_probability(class_logits: torch.Tensor) -> torch.Tensor:
    """P(real | x) with the fake class's logit fixed at 0: Z / (Z + 1), Z = sum exp(l) (= sigmoid(logsumexp l))."""
    return torch.sigmoid(torch.logsumexp(class_logits.float(), dim=1))


def labeled_indices(labels: torch.Tensor, n: int, num_classes: int, seed: int) -> torch.Tensor:
    """A fixed, class-balanced subset of ``n`` indices (n // K per class, the first classes one more when K does
    not divide n), chosen by a permutation seeded by ``seed``: the same labelled set on every run and resume."""
    gen = torch.Generator().manual_seed(seed * 7919 + 17)
    counts = np.full(num_classes, n // num_classes)
    counts[: n % num_classes] += 1
    picked = []
    for k in range(num_classes):
        of_k = torch.nonzero(labels == k).flatten()
        if len(of_k) < counts[k]:
            from ganforge.errors import DataError

            raise DataError(f"data.labeled={n} needs {counts[k]} images of class {k}, the data have {len(of_k)}")
        picked.append(of_k[torch.randperm(len(of_k), generator=gen)[: counts[k]]])
    return torch.cat(picked).sort().values


class SsganTrainer(AdaTrainer, Trainer):
    """Phases: ``Dmain`` (supervised + unsupervised loss), ``Gmain`` (feature matching, or the adversarial loss).

    With ``train.augment=ada`` every image D sees goes through ADA's pipeline, the labelled batch too (D is also the
    classifier: un-augmented labelled images would stand out from the rest)."""

    stat_keys = ("loss_d", "loss_g", "loss_supervised", "loss_d_real", "loss_d_fake", "d_real", "d_fake",
                 "train_accuracy")

    def __init__(self, cfg, nets, ctx):
        super().__init__(cfg, nets, ctx)
        self.stat_keys = (*type(self).stat_keys, *self.ada_stat_keys)
        ds = ctx.dataset
        if ds is None or getattr(ds, "labels", None) is None or ds.num_classes is None:
            from ganforge.errors import DataError

            raise DataError(f"family 'ssgan' needs a labelled set in memory ({cfg.data.spec!r} is not one): use "
                            "mnist-embedded, mnist, svhn or cifar10")
        n = cfg.data.labeled or len(ds)
        idx = labeled_indices(ds.labels, n, cfg.model.num_classes, cfg.train.seed)
        self.lab_x = ds.tensor[idx].to(ctx.device)
        self.lab_y = ds.labels[idx].to(ctx.device)

    def phases(self) -> list[Phase]:
        return [Phase("Dmain", "D", ("D",), self.d_main, repeat=self.cfg.train.d_steps),
                Phase("Gmain", "G", ("G",), self.g_main)]

    def labeled_batch(self, n: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` labelled images for this step, a pure function of (seed, step) so resume stays exact."""
        gen = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + step)
        pick = torch.randint(0, len(self.lab_y), (n,), generator=gen).to(self.ctx.device)
        x = self.lab_x[pick].contiguous(memory_format=self.ctx.memory_format)
        return x, self.lab_y[pick]

    def d_main(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        D, G = self.nets["D"], self.nets["G"]
        real = batch[0].contiguous(memory_format=self.ctx.memory_format)  # its labels are not used
        x_lab, y_lab = self.labeled_batch(real.shape[0], step)
        with self.ctx.autocast():
            with torch.no_grad():
                fake = G(self.latents(real.shape[0])[0])
            logits_lab = D.class_logits(self.augment(x_lab)).float()
            real_logit = D(self.augment(real)).float()
            fake_logit = D(self.augment(fake)).float()
        supervised = F.cross_entropy(logits_lab, y_lab)
        loss_real = F.softplus(-real_logit).mean()  # -log D(x)
        loss_fake = F.softplus(fake_logit).mean()  # -log(1 - D(G(z)))
        loss = supervised + self.cfg.model.unsupervised_weight * (loss_real + loss_fake)
        return loss, {"loss_d": loss, "loss_supervised": supervised, "loss_d_real": loss_real,
                      "loss_d_fake": loss_fake, "d_real": torch.sigmoid(real_logit).mean(),
                      "d_fake": torch.sigmoid(fake_logit).mean(),
                      "train_accuracy": (logits_lab.argmax(1) == y_lab).float().mean(),
                      **self.ada_observe(real_logit, fake_logit, "bce")}

    def g_main(self, batch: Batch, step: int) -> tuple[torch.Tensor, StatDict]:
        D, G = self.nets["D"], self.nets["G"]
        with self.ctx.autocast():
            fake = G(self.latents(batch[0].shape[0])[0])
            fake_logit, fake_f = D.forward_with_features(self.augment(fake))
            if self.cfg.train.g_objective == "feature_matching":
                with torch.no_grad():
                    real = batch[0].contiguous(memory_format=self.ctx.memory_format)
                    _, real_f = D.forward_with_features(self.augment(real))
                loss = feature_matching_loss(real_f.float(), fake_f.float())
            else:
                loss = F.softplus(-fake_logit.float()).mean()
        return loss, {"loss_g": loss}


def _networks(cfg: SsganConfig) -> dict[str, nn.Module]:
    if cfg.arch == "mlp":
        return {"G": MlpSemiSupervisedGenerator(cfg), "D": MlpSemiSupervisedDiscriminator(cfg)}
    return {"G": DCGANGenerator(cfg), "D": SemiSupervisedDiscriminator(cfg)}


register(Family("ssgan", SsganConfig, _networks, "ganforge.families.ssgan:SsganTrainer", classifier=True,
                train_keys=(*OPTIMIZER_KEYS, "d_steps", "g_objective", *ADA_KEYS)))
