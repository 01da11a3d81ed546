"""A run's options checked against the machine, the family and the data before anything is built or written: each
refusal is one line naming the option and the fix (a UserError)."""
from __future__ import annotations

import os
from typing import Callable

from ganforge.config import unread_message, unread_train_keys
from ganforge.errors import UserError
from ganforge.families import Family
from ganforge.train import tensorboard


def check_options(cfg, family: Family, dist, log: Callable[[str], None], fp16_devices: tuple[str, ...]) -> None:
    """Options this machine, this process or this family cannot honour."""
    tc, device = cfg.train, dist.device
    unread = unread_train_keys(cfg.model.family, tc)  # again: the Python API may hand a changed config
    if unread:
        raise UserError(unread_message(cfg.model.family, unread))
    if tc.precision == "fp16" and device.type not in fp16_devices:
        raise UserError(f"train.precision=fp16 needs a CUDA device (this run is on {device}): use bf16")
    if tc.sync_batchnorm and dist.enabled and device.type != "cuda":
        raise UserError("train.sync_batchnorm needs CUDA (torch's SyncBatchNorm has no CPU implementation): "
                        "leave it off, or drop BatchNorm with --set model.batch_norm=false")
    if cfg.eval.every and family.translation:
        raise UserError(f"eval.every={cfg.eval.every}: evaluation during training is for noise-to-image "
                        "families; score a translation run after training with 'ganforge evaluate RUN_DIR'")
    if tc.tensorboard and dist.is_main:
        tensorboard.require()  # before anything is written
    launcher_precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launcher_precision in ("bf16", "fp16") and launcher_precision != tc.precision:
        log(f"warning: accelerate's mixed precision ({launcher_precision}) is not applied; ganforge uses "
            f"train.precision={tc.precision}: pass --set train.precision={launcher_precision}")


def check_data_kind(cfg, family: Family, dataset) -> None:
    """The data must be what the family declares it learns from: (A, B) pairs for a translating family,
    single images (or points) for the others; refused here, before a model is built or a folder made."""
    spec, name = cfg.data.spec, cfg.model.family
    pairs = dataset.kind == "pairs"
    if pairs and not family.translation:
        raise UserError(f"--data {spec} holds (A, B) image pairs, for image-to-image families; {name!r} draws "
                        "from noise and learns from single images: give it an image set, or pick a "
                        "translation preset (see 'ganforge presets')")
    if family.translation and not pairs:
        raise UserError(f"{name!r} translates images and learns from (A, B) pairs, but --data {spec} holds "
                        f"single {dataset.kind}: use paired:DIR, unpaired:DIR, a digits-* task or a set "
                        "prepared with 'ganforge prepare --pairs'")


def check_labels(cfg, family: Family, dataset) -> None:
    """A conditional family needs labels, and at most ``model.num_classes`` classes of them."""
    mc = cfg.model
    if not family.conditional:
        return
    if getattr(dataset, "num_classes", None) is None:
        raise UserError(f"family {mc.family!r} needs class labels but {cfg.data.spec!r} has none: "
                        "use a labelled set (mnist-embedded, mnist, cifar10, ...)")
    if dataset.num_classes > mc.num_classes:
        raise UserError(f"{cfg.data.spec!r} has {dataset.num_classes} classes but model.num_classes="
                        f"{mc.num_classes}: --set model.num_classes={dataset.num_classes}")
