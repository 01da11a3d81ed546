"""The watches on the samples the loop draws every epoch: diversity collapse, a conditional generator that ignores
z, and classes fading out of the samples. Warnings (and, for collapse, guard.on_collapse's action): each finding is
an ``Event`` the run logs."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ganforge.families.contract import Fixed, Trainer
from ganforge.train.diversity import DiversitySpace
from ganforge.train.guards import ClassShares, CollapseWatch, Event


class SampleWatches:
    """Every check made on a drawn grid, with what it remembers between grids (the peaks, the last classes)."""

    def __init__(self, cfg, dist, dataset, space: DiversitySpace, real_images: Callable[[list[int]], torch.Tensor],
                 event: Callable[[Event], None]):
        gc = cfg.guard
        self.cfg, self.dist, self.space, self.event = cfg, dist, space, event
        self.collapse = CollapseWatch(gc.d_fake_floor, gc.d_fake_windows, gc.collapse_ratio,
                                      class_fade_share=gc.class_fade_share, space=space.name)
        self.real_spread = RealSpread(dataset, space, real_images)

    def on_samples(self, fake: torch.Tensor, fixed: Fixed, sampler: nn.Module, trainer: Trainer, step: int,
                   end: int) -> list[Event]:
        """The fixed inputs' samples at ``step`` of ``end``: the collapse findings (the others are warnings only)."""
        diversity = self.dist.broadcast_float(self.space.diversity(fake))
        findings = self.collapse.on_samples(diversity) if step > 0 else []
        for e in findings:
            self.event(e)
        if fixed.labels is not None and step >= end // 4:  # past the start: every G is noise then
            self._watch_labels(fake, fixed.labels)
        if self.class_watch_on() and self.dist.is_main and step >= self.class_watch_from(end):
            for e in self.collapse.on_class_shares(self._class_shares(sampler, trainer)):
                self.event(e)  # a warning only: a rollback would not bring a class back
        return findings

    def _watch_labels(self, fake: torch.Tensor, labels: torch.Tensor) -> None:
        """Warn when a conditional G ignores z. A warning only: rolling back cannot teach G to use z."""
        real = self.real_spread.of(labels)
        if real is None:
            return
        spread = self.dist.broadcast_float(self.space.label_spread(fake, labels))
        for e in self.collapse.on_label_spread(spread, real):
            self.event(e)

    def class_watch_on(self) -> bool:
        """The data have an in-domain classifier (the digit classifier on digits) and the check is not turned off."""
        gc = self.cfg.guard
        # data.classes keeps some classes only: the classifier's others would all read as faded
        return (self.space.num_classes > 1 and gc.class_samples > 0 and gc.class_fade_share > 0
                and not self.cfg.data.classes)

    def class_watch_from(self, end: int) -> int:
        """The first step checked: past the start, when every generator still draws noise."""
        return max(1, int(self.cfg.guard.class_fade_from * end))

    def describe(self) -> Optional[str]:
        if not self.class_watch_on():
            return None
        gc = self.cfg.guard
        return (f"class-fade watch: {gc.class_samples} samples classified by {self.space.name} at each "
                f"sample grid from {gc.class_fade_from:.0%} of the budget on; a class under "
                f"{gc.class_fade_share:g}x its fair share is reported")

    def _class_shares(self, sampler: nn.Module, trainer: Trainer, batch: int = 250) -> ClassShares:
        """``guard.class_samples`` samples from a seed of their own, classified; the training RNG is untouched (the
        fork keeps what a family's sampling draws from it, e.g. StyleGAN's noise), so resume stays exact."""
        n, space, device = self.cfg.guard.class_samples, self.space, self.dist.device
        gen = torch.Generator().manual_seed(self.cfg.train.seed + 24_680)
        was_training = sampler.training
        sampler.eval()
        preds = []
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
            for i in range(0, n, batch):
                inputs = trainer.generator_inputs(min(batch, n - i), gen)
                preds.append(space.classify(sampler(*inputs).float().cpu().clamp_(-1, 1)))
        sampler.train(was_training)
        return ClassShares.of(torch.cat(preds), space.num_classes)

    def end_line(self) -> Optional[str]:
        """The end-of-run line of the class-fade watch: how evenly the last samples cover the classes."""
        classes = self.collapse.last_classes
        if classes is None:
            return None
        _, _, share = classes.lowest()
        faded = share < self.cfg.guard.class_fade_share / classes.counts.shape[1]
        hint = "; a class faded out (ganforge evaluate RUN_DIR counts 10,000 samples)" if faded else ""
        return f"{'warning: ' if faded else ''}classes at the end ({self.space.name}): {classes.describe()}{hint}"


class RealSpread:
    """The conditional watch's yardstick, measured once on first use: the first images of each fixed label's
    class, as many as the fixed inputs have of it, measured as the samples are (None when the data have no
    labels)."""

    def __init__(self, dataset, space, real_images: Callable[[list[int]], torch.Tensor]):
        self.dataset, self.space, self.real_images = dataset, space, real_images
        self.measured = False
        self.value: Optional[float] = None

    def of(self, labels: torch.Tensor) -> Optional[float]:
        if not self.measured:
            self.measured = True
            data_labels = getattr(self.dataset, "labels", None)
            if data_labels is not None:
                labels, data_labels = labels.cpu(), torch.as_tensor(data_labels).cpu()
                idx = torch.cat([torch.nonzero(data_labels == k).flatten()[:int((labels == k).sum())]
                                 for k in labels.unique()])
                if idx.numel() >= 2:
                    self.value = self.space.label_spread(self.real_images(idx.tolist()), data_labels[idx])
        return self.value
