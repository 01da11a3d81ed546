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
        from ganforge.metrics.extractors import get_extractor

        self.cfg = cfg
        self.model_cfg = model_cfg
        self.make_inputs = make_inputs
        self.device = device
        self.ref_spec = (cfg.ref or train_spec).strip()
        self.extractor_name = ev.auto_extractor(self.ref_spec) if cfg.extractor == "auto" else cfg.extractor
        self.extractor = get_extractor(self.extractor_name, device)
        self.per_channel = "coverage" in cfg.metrics and self.ref_spec == "stacked-mnist"
        self.ref = reference_features(self.ref_spec, model_cfg.image_size, model_cfg.channels, cfg.n,
                                         self.extractor, 250, data_root, False, log=log)

    def best_key(self) -> Optional[str]:
        """The labelled key of ``cfg.best`` in this evaluator's results (e.g. fid -> fid[mnist-cnn])."""
        if not self.cfg.best:
            return None
        if self.cfg.best in ("classes_covered", "class_kl", "modes_covered", "modes_kl"):
            return self.cfg.best
        return f"{self.cfg.best}[{self.extractor_name}]"

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
        keep = any(m in self.cfg.metrics for m in ("kid", "prc"))
        got = ev.collect(src, self.extractor, 250, keep_features=keep, per_channel=self.per_channel)
        G.train(was_training)
        return ev.compute(self.cfg.metrics, got, self.ref, self.extractor_name, self.ref_spec)
