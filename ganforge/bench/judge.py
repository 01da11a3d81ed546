"""The class judge of ``bench metric-agreement``: a small classifier whose feature space is the ground truth.

A metric is trusted when it ranks image sets the way a network that knows the classes does. The judge is trained
on one part of a labelled set (never the part the sets are drawn from), with augmentations (random crop with
reflection padding, flips where the data allow them, small brightness/contrast changes), label smoothing and a
cosine learning rate; its penultimate layer (256-d) is the space its Fréchet distance is measured in.
"""
from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


def _block(cin: int, cout: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(convs):
        layers += [nn.Conv2d(cin if k == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class Judge(nn.Module):
    """conv 32 / 64 / 128 / 256 stages (BatchNorm, ReLU, max-pool; two convs in the middle stages), global average,
    FC 256 = the features, dropout, FC = the class logits. Input: (N, C, 32, 32) in [-1, 1]."""

    feature_dim = 256

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_block(channels, 32, 1), _block(32, 64, 2), _block(64, 128, 2), _block(128, 256, 1))
        self.fc = nn.Sequential(nn.Linear(256, self.feature_dim), nn.BatchNorm1d(self.feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(self.feature_dim, classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def augment(x: torch.Tensor, gen: torch.Generator, flip: bool) -> torch.Tensor:
    """Random 4 px shifts (reflection padding), flips when ``flip``, brightness/contrast +-10%."""
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dy, dx = torch.randint(0, 9, (2,), generator=gen).tolist()  # one shift per batch: cheap, still varied
    out = padded[:, :, dy:dy + h, dx:dx + w]
    if flip:
        mask = torch.rand(n, generator=gen) < 0.5
        out = torch.where(mask.view(n, 1, 1, 1), out.flip(3), out)
    c = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.1
    b = (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.1
    return ((out - out.mean(dim=(1, 2, 3), keepdim=True)) * c + out.mean(dim=(1, 2, 3), keepdim=True) + b).clamp(-1, 1)


@torch.no_grad()
def accuracy(model: Judge, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    pred = torch.cat([model(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])
    return float((pred == y).float().mean())


@torch.no_grad()
def judge_features(model: Judge, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model.features(x[i:i + 500]) for i in range(0, len(x), 500)]) if len(x) else torch.empty(0, 256)


def train_judge(x: torch.Tensor, y: torch.Tensor, classes: int, epochs: int, seed: int = 0, flip: bool = True,
                batch: int = 128, log: Callable[[str], None] = print) -> tuple[Judge, dict]:
    """Train on ``x`` (N, C, 32, 32), ``y``; class-balanced loss weights, since icon contexts are unequal."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Judge(x.shape[1], classes)
    steps = max(1, epochs * (len(x) // batch))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    counts = torch.bincount(y, minlength=classes).float().clamp(min=1)
    weight = (counts.sum() / (classes * counts)).sqrt()  # half-way to balanced: rare classes count, not dominate
    t0 = time.process_time()
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        loss = F.cross_entropy(model(augment(x[idx], gen, flip)), y[idx], weight=weight, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return model, {"epochs": epochs, "steps": steps, "cpu_seconds": round(time.process_time() - t0, 1)}
