"""Watching a run so that divergence and collapse are noticed at once, not days later.

``NonFiniteGuard`` counts skipped updates (a NaN/Inf loss or gradient never reaches the weights) and says when
the run must roll back. ``CollapseWatch`` reads the logged statistics and the fixed-z samples:

- discriminator domination: D(G(z)) stays near 0 for many log windows (G gets no useful gradient);
- generator collapse: the diversity of the fixed-z samples (mean pairwise distance in the in-domain feature space
  for digits, else in pixels: ``diversity.py``) falls far below the level it reached early in training;
- divergence: the generator loss explodes far above its running median;
- class fade: where the data have an in-domain classifier, one class's share of a few hundred samples falls far
  below its fair share 1/K (a generator that still draws varied, clean images may have dropped a class).
Each finding is an event with a kind and a message; the loop logs it and applies ``guard.on_collapse``.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from statistics import median
from typing import Optional

import torch


@dataclass
class Event:
    kind: str  # nonfinite | d_domination | collapse | label_collapse | class_fade | divergence | rollback | stop
    message: str
    data: dict = field(default_factory=dict)  # extra fields of the metrics.jsonl line (e.g. collapse's "space")

    def record(self, step: int) -> dict:
        return {"step": step, "event": self.kind, "message": self.message, **self.data}


def grads_finite(params) -> bool:
    """True when every gradient is finite (one fused reduction, no per-tensor sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    norms = torch._foreach_norm(grads)
    return bool(torch.isfinite(torch.stack(norms)).all())


def tensors_finite(tensors) -> bool:
    ts = [t for t in tensors if torch.is_floating_point(t)]
    if not ts:
        return True
    return bool(torch.isfinite(torch.stack(torch._foreach_norm(ts))).all())


@dataclass
class NonFiniteGuard:
    """Counts consecutive skipped updates; ``max_skips`` in a row means the state itself has gone bad."""

    max_skips: int = 5
    max_rollbacks: int = 3
    consecutive: int = 0
    total_skipped: int = 0
    rollbacks: int = 0

    def skipped(self) -> bool:
        """Record one skipped update; True when it is time to roll back."""
        self.consecutive += 1
        self.total_skipped += 1
        return self.consecutive >= self.max_skips

    def ok(self) -> None:
        self.consecutive = 0

    def can_roll_back(self) -> bool:
        return self.rollbacks < self.max_rollbacks


def sample_diversity(samples: torch.Tensor) -> float:
    """Mean pairwise L2 distance between the fixed-z samples (flattened); falls towards 0 on collapse."""
    x = samples.reshape(samples.shape[0], -1).float()
    if x.shape[0] < 2:
        return 0.0
    d = torch.cdist(x, x)
    n = x.shape[0]
    return float(d.sum() / (n * (n - 1)))


@dataclass
class CollapseWatch:
    d_fake_floor: float = 0.02  # D(G(z)) below this ...
    d_fake_windows: int = 10  # ... for this many log windows in a row: D dominates
    collapse_ratio: float = 0.25  # diversity below this share of its early peak: collapse
    divergence_factor: float = 10.0  # loss_g above this many times its running median: divergence
    class_fade_share: float = 0.25  # a class under this share of its fair share 1/K: class fade (0: off)
    space: str = "pixels"  # where sample diversity is measured (see diversity.py), named in collapse events
    low_d_fake: int = 0
    peak_diversity: Optional[float] = None
    g_losses: deque = field(default_factory=lambda: deque(maxlen=50))
    flagged: set = field(default_factory=set)  # kinds already reported (each is reported once until it clears)
    last_classes: Optional["ClassShares"] = None  # the newest class check, for the end-of-run line

    def _once(self, kind: str, active: bool, message: str, key: Optional[str] = None) -> list[Event]:
        """One event when ``kind`` (or its ``key``, e.g. one class) turns active; again only after it cleared."""
        key = key or kind
        if active and key not in self.flagged:
            self.flagged.add(key)
            return [Event(kind, message)]
        if not active:
            self.flagged.discard(key)
        return []

    def on_log(self, fake_score: Optional[float] = None, g_loss: Optional[float] = None) -> list[Event]:
        """A log window's D(G(z)) as a probability (its family's declared stat) and G's loss, either may be None."""
        events: list[Event] = []
        if fake_score is not None:
            self.low_d_fake = self.low_d_fake + 1 if fake_score < self.d_fake_floor else 0
            events += self._once("d_domination", self.low_d_fake >= self.d_fake_windows,
                                 f"discriminator dominates: D(G(z)) < {self.d_fake_floor} for "
                                 f"{self.low_d_fake} log windows (try a lower train.lr_d, label smoothing, or PacGAN's packing)")
        if g_loss is not None:
            if len(self.g_losses) >= 10:
                med = median(self.g_losses)
                events += self._once("divergence", med > 0 and g_loss > self.divergence_factor * med,
                                     f"generator loss {g_loss:.3g} is over {self.divergence_factor:g}x its running "
                                     f"median {med:.3g}: training is diverging")
            self.g_losses.append(g_loss)
        return events

    def on_samples(self, diversity: float) -> list[Event]:
        if self.peak_diversity is None or diversity > self.peak_diversity:
            self.peak_diversity = diversity
        low = self.peak_diversity > 0 and diversity < self.collapse_ratio * self.peak_diversity
        events = self._once("collapse", low, f"generator collapse: fixed-z sample diversity ({self.space}) "
                                             f"{diversity:.3g} fell below {self.collapse_ratio:g}x its peak "
                                             f"{self.peak_diversity:.3g}")
        for e in events:
            e.data = {"space": self.space, "diversity": round(diversity, 6), "peak": round(self.peak_diversity, 6)}
        return events

    def on_label_spread(self, spread: float, real_spread: float) -> list[Event]:
        """Conditional runs: samples of one label against real images of one class. A generator that ignores z
        draws one image per label; across labels its samples still differ, so ``on_samples`` cannot see it."""
        low = real_spread > 0 and spread < self.collapse_ratio * real_spread
        events = self._once("label_collapse", low, f"conditional collapse: the samples of one label spread "
                                                   f"{spread:.3g} ({self.space}), under {self.collapse_ratio:g}x "
                                                   f"the real images of one class ({real_spread:.3g}): the "
                                                   "generator ignores z")
        for e in events:
            e.data = {"space": self.space, "spread": round(spread, 6), "real_spread": round(real_spread, 6)}
        return events

    def on_class_shares(self, classes: "ClassShares") -> list[Event]:
        """One ``class_fade`` event per class whose share falls under ``class_fade_share`` x 1/K, again only after it
        recovered to twice that (classes wax and wane during training: a share near the line must not repeat the
        warning at every grid). Diversity cannot see a fade: a generator drawing nine digits well is as spread out."""
        self.last_classes = classes
        shares = classes.shares()
        floor = self.class_fade_share / shares.shape[1]
        events: list[Event] = []
        for c, k in ((c, k) for c in range(shares.shape[0]) for k in range(shares.shape[1])):
            share, key = float(shares[c, k]), f"class_fade:{c}:{k}"
            line = 2 * floor if key in self.flagged else floor
            found = self._once("class_fade", self.class_fade_share > 0 and share < line,
                               classes.fade_message(c, k, self.class_fade_share, self.space), key=key)
            for e in found:
                e.data = {"space": self.space, "class": k, "share": round(share, 6),
                          "fair_share": round(1 / shares.shape[1], 6), "samples": classes.n,
                          **({"channel": c} if shares.shape[0] > 1 else {})}
            events += found
        return events


@dataclass
class ClassShares:
    """How a few hundred samples fall into the in-domain classifier's K classes (one histogram per channel for
    Stacked MNIST, whose channels each hold a digit)."""

    counts: torch.Tensor  # (C, K) int64: samples predicted as each class, per channel

    @classmethod
    def of(cls, predictions: torch.Tensor, num_classes: int) -> "ClassShares":
        """From (N,) or (N, C) predicted class ids."""
        p = predictions.reshape(predictions.shape[0], -1).long().cpu()
        return cls(torch.stack([torch.bincount(p[:, c], minlength=num_classes) for c in range(p.shape[1])]))

    @property
    def n(self) -> int:
        return int(self.counts[0].sum())

    def shares(self) -> torch.Tensor:
        """(C, K) fractions of the samples."""
        return self.counts.double() / self.counts.sum(1, keepdim=True).clamp(min=1)

    def lowest(self) -> tuple[int, int, float]:
        """(channel, class, share) of the rarest class."""
        shares = self.shares()
        flat = int(shares.argmin())
        channel, k = divmod(flat, shares.shape[1])
        return channel, k, float(shares[channel, k])

    def kl(self) -> float:
        """KL(p_gen || uniform), averaged over channels (``ganforge evaluate``'s class_kl against a uniform set)."""
        from ganforge.metrics.modes import histogram_kl

        return sum(histogram_kl(c.numpy()) for c in self.counts) / self.counts.shape[0]

    def fade_message(self, channel: int, k: int, ratio: float, space: str) -> str:
        where = f" in channel {channel}" if self.counts.shape[0] > 1 else ""
        share = float(self.shares()[channel, k])
        return (f"class {k}{where} fades out: {100 * share:.1f}% of {self.n} samples ({space}), under {ratio:g}x "
                f"its fair share {100 / self.counts.shape[1]:.0f}%")

    def describe(self) -> str:
        channel, k, share = self.lowest()
        where = f" in channel {channel}" if self.counts.shape[0] > 1 else ""
        return (f"rarest class {k}{where} {100 * share:.1f}% (fair share {100 / self.counts.shape[1]:.0f}%), "
                f"class KL {self.kl():.3f}, of {self.n} samples")

