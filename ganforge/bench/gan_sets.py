"""Generated sets of graded quality for ``bench metric-agreement``: real GANs at several budgets.

Distorted reals (noise, blur, tints) are what a metric must see, but they are not what it is mostly asked about:
samples of GANs at different stages of training, from different families. Each (family, budget) here is one
``ganforge train`` run on the part of the data the judge learns from (so no run sees the reference or the
pool), on one thread, its final evaluation off; its samples, resized to the pool's side, are one more set.
Runs are kept under ``root`` and reused when finished, so a rerun of the bench only rescores.
"""
from __future__ import annotations

import json
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


def _train_one(job: tuple, seed: int, log: Callable[[str], None]) -> Path:
    from ganforge.bench.recipe import train_variant

    name, preset, steps, sets, out = job
    done = out / "bench_row.json"
    if done.exists() and json.loads(done.read_text()).get("sets") == sets:
        log(f"gan sets: {name}: finished before, reused")
        return out
    row = train_variant(name, [*sets, "eval.final=false"], out, seed, preset, steps=steps)
    done.write_text(json.dumps({**row, "sets": sets}))
    log(f"gan sets: {name}: {row['steps']} steps, {row['cpu_s']} CPU s")
    return out


def gan_sets(data: str, spec: str, n: int, side: int, root: Path, seed: int = 0, parallel: int = 2,
             log: Callable[[str], None] = print) -> list[tuple[str, str, torch.Tensor]]:
    """(name, "graded", ``n`` samples at ``side`` px) for every run of ``RUNS[data]``, trained on ``spec``."""
    from ganforge.apps.sampling import load_generator

    jobs = [(f"{family}, {steps} steps", preset, steps, [f"data.spec={spec}", *sets],
             Path(root) / data / f"{family}-{steps}") for family, preset, steps, sets in RUNS[data]]
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        outs = list(pool.map(lambda j: _train_one(j, seed, log), jobs))
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
    folder = Path(root) / data / "train-images"
    marker = folder.with_suffix(".done")  # beside the folder: a file inside it would be read as an image
    if not marker.exists():
        from ganforge.bench.colorset import load_colorset

        load_colorset(32, 0, log=lambda s: None).write_folder("train", folder)
        marker.write_text("")
    return f"folder:{folder}"
