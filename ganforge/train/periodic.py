"""Evaluation inside the training loop: the same metrics as ``ganforge evaluate``, on a small N.

The extractor and the reference features are prepared once; each call samples ``n`` images from the generator
with a fixed seed of its own (the training RNG is untouched, so resume stays exact) and returns labelled values.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ganforge.config import EvalConfig, ModelConfig
from ganforge.metrics import pipeline as ev
from ganforge.train.reference import reference_features


class PeriodicEvaluator:
    def __init__(self, cfg: EvalConfig, model_cfg: ModelConfig, train_spec: str, make_inputs,
                 device: torch.device, data_root: str = "data", log=print):
        """``make_inputs(n, generator)``: the generator's inputs (the family's trainer knows them)."""
        from ganforge.data.build import digits_per_channel
        from ganforge.metrics.registry import needs_channel_classes, needs_features
        from ganforge.train.reference import OFFLINE_FALLBACK, open_extractor

        self.cfg = cfg
        self.model_cfg = model_cfg
        self.make_inputs = make_inputs
        self.device = device
        self.ref_spec = (cfg.ref or train_spec).strip()
        # the run's own extractor, or (weights absent offline) one that needs no download: every run gets numbers
        self.extractor, self.extractor_name = open_extractor(cfg.extractor, self.ref_spec, device,
                                                             fallback=OFFLINE_FALLBACK, log=log,
                                                             shape=((model_cfg.image_size,) * 2, model_cfg.channels),
                                                             data_root=data_root)
        self.per_channel = needs_channel_classes(cfg.metrics, digits_per_channel(self.ref_spec))
        self.keep = needs_features(cfg.metrics)
        self.ref = reference_features(self.ref_spec, model_cfg.image_size, model_cfg.channels, cfg.n,
                                         self.extractor, 250, data_root, False, log=log)

    def best_key(self) -> Optional[str]:
        """The labelled key of ``cfg.best`` in this evaluator's results (e.g. fid -> fid[mnist-cnn])."""
        if not self.cfg.best:
            return None
        from ganforge.metrics.registry import labelled

        return labelled(self.cfg.best, self.extractor_name)

    @torch.no_grad()
    def __call__(self, G: nn.Module, step: int) -> dict[str, float]:
        gen = torch.Generator().manual_seed(987_654 + step)
        n = self.cfg.n
        was_training = G.training
        G.eval()

        def batches(bs: int):
            for i in range(0, n, bs):
                yield G(*self.make_inputs(min(bs, n - i), gen)).float().cpu().clamp_(-1, 1)

        size = self.model_cfg.image_size
        src = ev.ImageSource("training", self.model_cfg.channels, size, size, n, batches)
        got = ev.collect(src, self.extractor, 250, keep_features=self.keep, per_channel=self.per_channel)
        G.train(was_training)
        return ev.compute(self.cfg.metrics, got, self.ref, self.extractor_name, self.ref_spec)
