"""The space in which the collapse watch measures how diverse the fixed-z samples are.

Pixel distances say little about collapse: one digit drawn in 64 slightly different strokes, or a generator that
draws only 3s, is about as spread out in pixels as real data. For digit data the shipped in-domain classifier
(``mnist-cnn``, the evaluation's extractor) gives a space where different digits lie far apart and copies of one
digit close together, so a collapse shows as a large drop. Everything else (folders, photos, fashion-mnist, 2-D
points) is measured in pixels (or point coordinates). The space is chosen once per run and named in the log and
in every ``collapse`` event, so a number is never compared across spaces.

Measuring must not change training: the network is built with the global RNG state saved and restored (its
random initialisation is overwritten by the shipped weights anyway), runs on the CPU under ``inference_mode`` in
eval mode (no dropout, no BatchNorm statistics updated), and never sees the models being trained.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ganforge.config import ModelConfig
from ganforge.families.outputs import output_of
from ganforge.train.guards import sample_diversity



@dataclass
class DiversitySpace:
    name: str  # "mnist-cnn" | "pixels" | "points": recorded in collapse events
    extractor: Optional[Callable[[torch.Tensor], dict]] = None  # a ganforge.metrics.extractors FeatureExtractor
    per_channel: bool = False  # Stacked MNIST: features of each channel's digit, concatenated
    note: str = ""  # why the in-domain space was not used, when it was expected

    def features(self, samples: torch.Tensor) -> torch.Tensor:
        """(N, D) vectors whose pairwise distances measure diversity."""
        n = samples.shape[0]
        if self.extractor is None:
            return samples.reshape(n, -1).float()
        x = samples.detach().float().cpu()
        if self.per_channel:
            x = x.reshape(n * x.shape[1], 1, *x.shape[2:])
        with torch.inference_mode():
            return self.extractor(x)["features"].reshape(n, -1)

    def diversity(self, samples: torch.Tensor) -> float:
        """Mean pairwise L2 distance of the samples in this space; falls towards 0 on collapse."""
        return sample_diversity(self.features(samples))

    def label_spread(self, samples: torch.Tensor, labels: torch.Tensor) -> float:
        """Conditional runs: the mean diversity of the samples that share a label (only z differs among them)."""
        feats, labels = self.features(samples), labels.cpu()
        spreads = [sample_diversity(feats[labels == k]) for k in labels.unique() if int((labels == k).sum()) >= 2]
        return sum(spreads) / len(spreads) if spreads else 0.0

    @property
    def num_classes(self) -> int:
        """The in-domain classifier's classes (0 when the space has no classifier: no class-fade check)."""
        return int(getattr(self.extractor, "num_classes", 0) or 0) if self.extractor is not None else 0

    def classify(self, samples: torch.Tensor) -> torch.Tensor:
        """(N,) predicted class ids, or (N, C) one per channel for Stacked MNIST (each channel holds a digit)."""
        n = samples.shape[0]
        x = samples.detach().float().cpu()
        if self.per_channel:
            x = x.reshape(n * x.shape[1], 1, *x.shape[2:])
        with torch.inference_mode():
            return self.extractor(x)["logits"].argmax(1).reshape(n, -1).squeeze(1)

    def describe(self) -> str:
        where = {"mnist-cnn": "the mnist-cnn digit classifier's feature space", "points": "point coordinates"}
        text = f"collapse watch: fixed-z sample diversity in {where.get(self.name, 'pixel space')}"
        return f"{text} ({self.note})" if self.note else text


def choose_space(data_spec: str, model: ModelConfig) -> DiversitySpace:
    """The in-domain feature space for digit data (when the classifier loads), else pixels or points."""
    if not output_of(model).images:
        return DiversitySpace("points")
    from ganforge.data.build import digits_per_channel, holds_digits

    if not holds_digits(data_spec):
        return DiversitySpace("pixels")
    try:
        from ganforge.metrics.extractors import get_extractor

        with torch.random.fork_rng(devices=[]):  # MnistCNN() draws initial weights: keep the training RNG as it is
            extractor = get_extractor("mnist-cnn", "cpu")
    except Exception as exc:  # noqa: BLE001 - a missing or broken weights file must never cost a run
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return DiversitySpace("pixels", note=f"mnist-cnn unavailable: {reason}")
    return DiversitySpace("mnist-cnn", extractor, per_channel=digits_per_channel(data_spec))
