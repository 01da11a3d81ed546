"""What a run puts out, as one object per kind: how its samples are described, saved and pictured.

``Family.output(cfg)`` names the kind ("images", "points" or "translations"); ``output_of(cfg)`` gives its object,
so general code (the loop, the CLI, the apps) asks the kind instead of comparing its name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch

from ganforge import viz

POINTS_SHOWN = 2000  # real and generated points in a scatter plot


class OutputKind:
    """Images by default: grids of the fixed inputs, image files, image metrics."""

    name = "images"
    images = True  # samples are images: grids, PNG/npz files, latent walks, image metrics
    translations = False  # image -> image: what is drawn is a translation of an input

    def describe(self, model) -> str:
        """The samples' shape, for the run's first lines."""
        return f"{model.image_size}px"

    def score(self, scorer, run):
        """How a run of this kind is scored: ``scorer`` (``ganforge evaluate``'s) knows the ways, the kind picks
        its own: image metrics on samples drawn from its generator."""
        return scorer.images(run)

    def save_samples(self, path: Path, fake: torch.Tensor, picture: tuple[torch.Tensor, int], dataset,
                     step: int) -> bool:
        """One epoch's samples into ``path``; True when the picture is a grid (TensorBoard shows those too)."""
        viz.save_grid(picture[0], path, nrow=picture[1])
        return True

    def save_real_vs_fake(self, path: Path, sampler, trainer, fixed, dataset,
                          real_images: Callable[[range], torch.Tensor], n: int) -> None:
        """``real_vs_fake.png``: the first ``n`` fixed inputs drawn, beside as many real images."""
        with torch.inference_mode():
            first = type(fixed)({k: v[:n] for k, v in fixed.tensors.items()}, fixed.nrow, fixed.labels_key)
            fake = trainer.draw(sampler, first)
        shown = min(len(fake), n)  # as many real images as fakes (a preset may fix only 16 latents)
        viz.save_real_vs_fake(real_images(range(shown)), fake, path)


class Points(OutputKind):
    """2-D samples: scatter plots over the real points instead of grids; no image files or image metrics."""

    name = "points"
    images = False

    def describe(self, model) -> str:
        return "2-D points"

    def score(self, scorer, run):
        from ganforge.errors import UserError

        raise UserError(f"{run.path} generates 2D points: use 'ganforge bench coverage' for point metrics")

    def save_samples(self, path, fake, picture, dataset, step) -> bool:
        viz.save_points_plot(dataset.tensor[:POINTS_SHOWN], fake, path, title=f"step {step}")
        return False

    def save_real_vs_fake(self, path, sampler, trainer, fixed, dataset, real_images, n) -> None:
        """Many generated points (a seed of their own) over the real ones."""
        with torch.inference_mode():
            gen = torch.Generator().manual_seed(0)
            many = sampler(*trainer.generator_inputs(POINTS_SHOWN, gen)).float().cpu()
        viz.save_points_plot(dataset.tensor[:POINTS_SHOWN], many, path)


class Translations(OutputKind):
    name = "translations"
    translations = True

    def score(self, scorer, run):
        """Its held-out pairs translated and compared with their targets."""
        return scorer.translations(run)


KINDS: dict[str, OutputKind] = {k.name: k for k in (OutputKind(), Points(), Translations())}


def output_of(cfg) -> OutputKind:
    """The output kind of a run of model config ``cfg``."""
    from ganforge.families import output_kind

    return KINDS[output_kind(cfg)]


def refuse_points(cfg, what: str) -> Optional[str]:
    """The one line that says ``what`` needs images, for a run that draws points (None for image runs)."""
    if output_of(cfg).images:
        return None
    return f"this run generates 2D points, not images: {what}"
