"""``ganforge bench coverage``: the mode-collapse benchmarks of VEEGAN and PacGAN, end to end.

- ``ring8`` / ``grid25``: 2D mixtures of Gaussians; modes covered, share of high-quality samples (within 3 std
  of a mode) and reverse KL of the mode histogram, from 2,500 samples (as in VEEGAN/PacGAN).
- ``stacked-mnist``: three digits as RGB channels, 1,000 modes; each channel of 26,000 samples classified by
  the shipped in-domain digit classifier; modes covered and KL to the uniform mode distribution.
Each benchmark trains its preset (ganforge's best recipe) under the given budget and writes one table row.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ganforge.bench.markdown import machine_info, write_block

BENCHES = {
    "ring8": "ring8-mlp",
    "grid25": "grid25-mlp",
    "stacked-mnist": "stacked-mnist-pacgan",
}
ANCHORS = {  # published figures on the same benchmarks (PacGAN paper, Lin et al. 2018, tables 2-3)
    "ring8": "PacGAN: 7.9 / 8 modes (GAN 6.3)",
    "grid25": "PacGAN: 23.8 / 25 modes (GAN 17.3)",
    "stacked-mnist": "DCGAN 99 modes, KL 3.40; PacDCGAN2 1,000 modes, KL 0.06",
}


def run_one(name: str, out_root: Path, seconds: Optional[float], seed: int, log=print) -> dict:
    from ganforge.config import load_config
    from ganforge.data import mode_centers, mode_std
    from ganforge.metrics import modes
    from ganforge.sampling import load_generator
    from ganforge.train import train

    preset = BENCHES[name]
    values = {"train.seed": seed}
    if seconds is not None:
        values.update({"train.time_limit": seconds})
    cfg = load_config(preset, [], values)
    run = out_root / f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    t0 = time.perf_counter()
    summary = train(cfg, run, progress=True, log=log)
    if summary.stopped:  # a signal (or a guard) ended the training: the bench stops too, it does not go on
        raise KeyboardInterrupt(f"{preset} stopped ({summary.stopped}) at step {summary.steps}")
    train_s = time.perf_counter() - t0
    g = load_generator(run)
    row = {"bench": name, "preset": preset, "steps": summary.steps, "train_s": round(train_s), "run": str(run)}
    if name in ("ring8", "grid25"):
        x = g.sample(2500, seed=seed).numpy()
        res = modes.synthetic_modes(x, mode_centers(name).numpy(), mode_std(name))
        row.update(modes=f"{res['modes_covered']} / {len(mode_centers(name))}",
                   high_quality=f"{100 * res['high_quality']:.1f}%", kl=f"{res['reverse_kl']:.3f}")
    else:
        from ganforge.metrics.extractors import get_extractor

        clf = get_extractor("mnist-cnn", torch.device("cpu"))
        preds = []
        with torch.inference_mode():
            for i in range(0, 26_000, 1000):
                preds.append(np.asarray(clf.classify_channels(g.sample(1000, seed=seed * 100 + i))))
        p = np.concatenate(preds)
        res = modes.stacked_mnist_modes(p[:, 0], p[:, 1], p[:, 2])
        row.update(modes=f"{res['modes_covered']} / 1000", high_quality="", kl=f"{res['kl']:.3f}")
    return row


def render_block(rows: list[dict], seconds: Optional[float], info: dict) -> str:
    budget = f"{seconds:.0f} s of training each" if seconds else "each preset's own step budget"
    lines = [
        "<!-- bench:coverage:start -->",
        f"{budget}, on {info['cpu']} ({info['logical_cores']} logical cores, torch {info['torch']}), "
        f"{time.strftime('%Y-%m-%d')}. Command: `ganforge bench coverage"
        + (f" --seconds {seconds:.0f}" if seconds else "") + " --write docs/BENCHMARKS.md`",
        "",
        "| benchmark | preset | steps | train (s) | modes covered | high-quality samples | KL | published anchor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['bench']} | `{r['preset']}` | {r['steps']:,} | {r['train_s']} | {r['modes']} | "
                     f"{r['high_quality']} | {r['kl']} | {ANCHORS[r['bench']]} |")
    lines.append("<!-- bench:coverage:end -->")
    return "\n".join(lines)


def main(benches: Sequence[str] = tuple(BENCHES), seconds: Optional[float] = None,
         out_root: Path = Path("runs/bench-coverage"), write: Optional[Path] = None, seed: int = 0) -> list[dict]:
    rows = [run_one(b, Path(out_root), seconds, seed) for b in benches]
    for r in rows:
        print(f"{r['bench']:14s} modes={r['modes']:>12} hq={r['high_quality']:>7} kl={r['kl']} steps={r['steps']}")
    if write is not None:
        write_block(Path(write), "coverage", render_block(rows, seconds, machine_info(torch.device("cpu"))))
    return rows
