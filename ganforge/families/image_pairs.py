"""What the image-to-image families (pix2pix, cyclegan) share: batches of (A, B) pairs, random jitter, the fixed
test pairs drawn every epoch as input | output | target, and the adversarial terms at the authors' scale.

A batch holds A and B stacked along the channels (``data/pairs.py``), so a crop or flip of the batch is the same
crop or flip of both halves. The jitter is a pure function of (seed, step): every phase of a step sees the same
crops, and a resumed run the same ones as a straight run.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from ganforge.data.pairs import split_halves
from ganforge.families.parts.losses import RELATIVISTIC, canonical_loss, d_loss, g_loss
from ganforge.families.contract import Batch, Fixed, Trainer

FIXED_PER_ROW = 4  # input | output | target triplets per row of translations.png


def jitter(x: torch.Tensor, load_size: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """pix2pix's random jitter on a batch: resize to ``load_size`` (bicubic), a random ``size`` crop per image,
    and a random horizontal flip per image (when ``flip``); choices drawn from ``gen`` on the CPU."""
    n, _, h, w = x.shape
    if load_size > h or load_size > w:
        x = F.interpolate(x, size=(load_size, load_size), mode="bicubic", align_corners=False).clamp_(-1, 1)
    tops = torch.randint(0, x.shape[2] - h + 1, (n,), generator=gen).tolist()
    lefts = torch.randint(0, x.shape[3] - w + 1, (n,), generator=gen).tolist()
    flips = (torch.rand(n, generator=gen) < 0.5).tolist() if flip else [False] * n
    crops = [x[i, :, t:t + h, l:l + w] for i, (t, l) in enumerate(zip(tops, lefts))]
    return torch.stack([c.flip(-1) if f else c for c, f in zip(crops, flips)])


def adversarial_terms(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's loss as the pix2pix / CycleGAN code computes it: (real + fake) / 2 with BCE (``bce``) or squared
    error (``lsgan``, whose ``d_loss`` terms already carry the 1/2)."""
    real, fake = d_loss(real_logits, fake_logits, kind)
    return (real + fake) * (0.5 if canonical_loss(kind) != "lsgan" else 1.0)


def generator_term(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """G's adversarial loss at the authors' scale: BCE against "real", or the mean squared error to 1 for lsgan."""
    return g_loss(fake_logits, kind) * (2.0 if canonical_loss(kind) == "lsgan" else 1.0)


class TranslationTrainer(Trainer):
    """Base of the image-to-image trainers: inputs are images, not noise."""

    fake_score_stat = None  # patch discriminators' outputs are no probability of a whole image

    def __init__(self, cfg, nets, ctx):
        super().__init__(cfg, nets, ctx)
        if ctx.dataset is None or getattr(ctx.dataset, "kind", "pairs") != "pairs":
            from ganforge.errors import DataError

            raise DataError(f"family {cfg.model.family!r} translates images: --data {cfg.data.spec!r} holds no "
                            "pairs; use paired:DIR, unpaired:DIR or a digits-* task (e.g. digits-sr)")
        self.kind = canonical_loss(cfg.train.loss)
        if self.kind in RELATIVISTIC:
            from ganforge.errors import UserError

            raise UserError(f"train.loss={cfg.train.loss}: the relativistic loss is for the noise-to-image families; "
                            f"{cfg.model.family} takes bce, lsgan, hinge, wgan or minimax")

    # --- batches
    def halves(self, batch: Batch, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) of this step, jittered when the config asks, in the run's memory format."""
        x = batch[0]
        mc = self.cfg.model
        if mc.load_size or mc.flip:
            gen = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + step)
            x = jitter(x, mc.load_size or x.shape[-1], mc.flip, gen)
        a, b = split_halves(x)
        fmt = self.ctx.memory_format
        return a.contiguous(memory_format=fmt), b.contiguous(memory_format=fmt)

    # --- sampling: image -> image
    def fixed_inputs(self, seed: int, n: int) -> Fixed:
        """The first ``n`` pairs of the test split when the data have one (never trained on), else of the training
        set: drawn every epoch, so the pictures show the same images throughout."""
        from ganforge.data import build_spec

        cfg = self.cfg
        try:
            source = build_spec(cfg.data.spec, cfg.data.root, False, cfg.model.channels, cfg.model.image_size,
                                limit=n, split="test", direction=cfg.data.direction)
        except Exception:  # noqa: BLE001 - no test split: show training pairs
            source = self.ctx.dataset
        a, b = split_halves(dataset_items(source, torch.arange(min(n, len(source)))))
        return Fixed({"a": a, "b": b}, FIXED_PER_ROW)

    def generator_inputs(self, n: int, gen: torch.Generator) -> tuple:
        """``n`` random A images of the training set (BatchNorm refresh of the EMA copy)."""
        idx = torch.randint(0, len(self.ctx.dataset), (n,), generator=gen)
        return (split_halves(dataset_items(self.ctx.dataset, idx))[0].to(self.ctx.device),)

    def draw(self, generator, fixed: Fixed) -> torch.Tensor:
        return generator(fixed.tensors["a"].to(self.ctx.device)).float().cpu()

    def third_column(self, fake: torch.Tensor, fixed: Fixed) -> torch.Tensor:
        """What goes right of the output in the pictures: the target."""
        return fixed.tensors["b"]

    def picture(self, fake: torch.Tensor, fixed: Fixed) -> tuple[torch.Tensor, int]:
        """input | output | target triplets, ``FIXED_PER_ROW`` per row."""
        third = self.third_column(fake, fixed).float().cpu()
        a = fixed.tensors["a"].float()
        grid = torch.stack([a, fake, third], dim=1).flatten(0, 1)
        return grid, 3 * min(FIXED_PER_ROW, len(a))

    def real_images(self, items: torch.Tensor) -> torch.Tensor:
        return split_halves(items)[1]

    def finish_pictures(self, run_dir: Path, frames: list[Path]) -> None:
        """translations.png (the last frame) and translations.gif (every frame)."""
        from ganforge import viz

        if frames:
            shutil.copyfile(frames[-1], run_dir / "translations.png")
            viz.save_progress_gif(frames, run_dir / "translations.gif")


def dataset_items(dataset, idx: torch.Tensor) -> torch.Tensor:
    """The items at ``idx`` stacked: a slice of an in-memory set, else each one read."""
    tensor = getattr(dataset, "tensor", None)
    if tensor is not None:
        return tensor[idx]
    return torch.stack([dataset[int(i)][0] for i in idx])
