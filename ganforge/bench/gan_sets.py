"""Generated sets of graded quality for ``bench metric-agreement``: real GANs at several budgets.

Distorted reals (noise, blur, tints) are what a metric must see, but they are not what it is mostly asked about:
samples of GANs at different stages of training, from different families. Each (family, budget) here is one
``ganforge train`` run on the part of the data the judge learns from (so no run sees the reference or the
pool), on one thread, its final evaluation off; its samples, resized to the pool's side, are one more set.
Runs are kept under ``root`` and reused when finished, so a rerun of the bench only rescores.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

# (family label, preset, steps, overrides) per data set; budgets from "barely started" to the preset's own.
RUNS = {
    "digits": [("dcgan", "dcgan-mnist", s, ["data.split=train"]) for s in (40, 150, 600, 3500)]
              + [("mlp", "mnist-mlp", s, ["data.split=train"]) for s in (300, 3000)],
    "colour": [("dcgan", "dcgan-small", s, []) for s in (40, 150, 600, 3000)]
              + [("mlp", "mnist-mlp", s, ["model.channels=3", "model.image_size=32"]) for s in (300, 3000)],
}


def gan_sets(data: str, spec: str, n: int, side: int, root: Path, seed: int = 0, parallel: int = 2,
             log: Callable[[str], None] = print) -> list[tuple[str, str, torch.Tensor]]:
    """(name, "graded", ``n`` samples at ``side`` px) for every run of ``RUNS[data]``, trained on ``spec``."""
    from ganforge.apps.sampling import load_generator
    from ganforge.bench.recipe import train_or_reuse

    jobs = [(f"{family}, {steps} steps", preset, steps, [f"data.spec={spec}", *sets],
             Path(root) / data / f"{family}-{steps}-s{seed}") for family, preset, steps, sets in RUNS[data]]
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        outs = list(pool.map(lambda j: Path(train_or_reuse(j[0], j[1], [*j[3], "eval.final=false"], j[4], seed, j[2],
                                                           lambda s: log(f"gan sets: {s}"))["run"]), jobs))
    sets = []
    for job, out in zip(jobs, outs):
        x = load_generator(out, "cpu").sample(n, seed=seed)
        if x.shape[-1] != side:
            x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        sets.append((job[0], "graded", x.clamp(-1, 1)))
    return sets


def train_spec(data: str, root: Path) -> str:
    """The ``--data`` of the runs: the judge's part (digits: the embedded train split; icons: their train split,
    written once as a folder under ``root``)."""
    if data == "digits":
        return "mnist-embedded"
    from ganforge.bench.colorset import split_folders

    return f"folder:{split_folders(Path(root) / data, ('train',))['train']}"
