"""``ganforge bench coverage``: the mode-collapse benchmarks of VEEGAN and PacGAN, end to end.

- ``ring8`` / ``grid25``: 2D mixtures of Gaussians; modes covered, share of high-quality samples (within 3 std
  of a mode) and reverse KL of the mode histogram, from 2,500 samples (as in VEEGAN/PacGAN).
- ``stacked-mnist``: three digits as RGB channels, 1,000 modes; each channel of 26,000 samples classified by
  the shipped in-domain digit classifier; modes covered and KL to the uniform mode distribution.
Each benchmark trains its preset (ganforge's best recipe) under the given budget, once per seed, and writes one
table row: the mean over the seeds (papers average over trials too), each seed's figures, and whether the
issue's target is met by the mean.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ganforge.bench.markdown import block_rows, machine_info, write_block

BENCHES = {
    "ring8": "ring8-mlp",
    "grid25": "grid25-mlp",
    "stacked-mnist": "stacked-mnist-pacgan",
}
ANCHORS = {  # published figures on the same benchmarks (PacGAN paper, Lin et al. 2018, tables 2-3)
    "ring8": "PacGAN2: 7.9 / 8 modes, 95.6% HQ (GAN 6.3)",
    "grid25": "PacGAN2: 23.8 / 25 modes, 91.3% HQ (GAN 17.3)",
    "stacked-mnist": "DCGAN 99 modes, KL 3.40; PacDCGAN2 1,000 modes, KL 0.06",
}
TOTAL_MODES = {"ring8": 8, "grid25": 25, "stacked-mnist": 1000}
STACKED_SAMPLES = 26_000  # PacGAN's evaluation size for Stacked MNIST
POINT_SAMPLES = 2_500  # VEEGAN / PacGAN's for the 2D mixtures


def target_met(bench: str, modes: float, high_quality: Optional[float], kl: float) -> bool:
    """The issue's targets: all 8 / 25 modes with >= 90% high quality; >= 990 of 1,000 modes with KL < 0.1."""
    if bench == "stacked-mnist":
        return modes >= 990 and kl < 0.1
    return modes >= TOTAL_MODES[bench] and high_quality is not None and high_quality >= 0.9


def score(bench: str, generator, seed: int) -> dict:
    """Modes covered, share of high-quality samples (2D sets; None for Stacked MNIST) and KL of a generator."""
    from ganforge.metrics import modes

    if bench in ("ring8", "grid25"):
        from ganforge.data import mode_centers, mode_std

        x = generator.sample(POINT_SAMPLES, seed=seed).numpy()
        res = modes.synthetic_modes(x, mode_centers(bench).numpy(), mode_std(bench))
        return {"modes": res["modes_covered"], "high_quality": res["high_quality"], "kl": res["reverse_kl"]}
    from ganforge.metrics.extractors import get_extractor

    clf = get_extractor("mnist-cnn", torch.device("cpu"))
    preds = []
    with torch.inference_mode():
        for i in range(0, STACKED_SAMPLES, 1000):
            preds.append(np.asarray(clf.classify_channels(generator.sample(1000, seed=seed * 100_003 + i).cpu())))
    p = np.concatenate(preds)
    res = modes.stacked_mnist_modes(p[:, 0], p[:, 1], p[:, 2])
    return {"modes": res["modes_covered"], "high_quality": None, "kl": res["kl"]}


def run_one(name: str, out_root: Path, seconds: Optional[float], seed: int, steps: Optional[int] = None,
            device: Optional[str] = None, log=print, preset: Optional[str] = None,
            overrides: Sequence[str] = (), tag: str = "") -> dict:
    """Train the benchmark's preset (or ``preset`` with ``overrides``, as ``--set`` takes them) once and score its
    final generator."""
    from ganforge.config import load_config
    from ganforge.apps.sampling import load_generator
    from ganforge.train import train

    preset = preset or BENCHES[name]
    values: dict = {"train.seed": seed}
    if seconds is not None:
        values["train.time_limit"] = seconds
    if steps is not None:
        values["train.steps"] = steps
    if device is not None:
        values["train.device"] = device
    cfg = load_config(preset, list(overrides), values)
    run = Path(out_root) / f"{preset}{tag}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    t0 = time.perf_counter()
    summary = train(cfg, run, progress=True, log=log)
    if summary.stopped:  # a signal (or a guard) ended the training: the bench stops too, it does not go on
        raise KeyboardInterrupt(f"{preset} stopped ({summary.stopped}) at step {summary.steps}")
    train_s = time.perf_counter() - t0
    res = score(name, load_generator(run), seed)
    return {"bench": name, "preset": preset, "seed": seed, "steps": summary.steps, "train_s": train_s,
            "run": str(run), **res}


def summarize(name: str, runs: list[dict]) -> dict:
    """One table row from the runs of one benchmark (one per seed)."""
    hq = [r["high_quality"] for r in runs if r["high_quality"] is not None]
    row = {
        "bench": name, "preset": runs[0]["preset"], "seeds": [r["seed"] for r in runs],
        "steps": runs[0]["steps"], "train_s": float(np.mean([r["train_s"] for r in runs])),
        "modes": float(np.mean([r["modes"] for r in runs])),
        "high_quality": float(np.mean(hq)) if hq else None,
        "kl": float(np.mean([r["kl"] for r in runs])),
        "per_seed": runs,
    }
    row["met"] = target_met(name, row["modes"], row["high_quality"], row["kl"])
    return row


def _per_seed(row: dict) -> str:
    parts = []
    for r in row["per_seed"]:
        hq = "" if r["high_quality"] is None else f", {100 * r['high_quality']:.1f}%"
        parts.append(f"{r['modes']}{hq}, {r['kl']:.3f}")
    return "; ".join(parts)


HEADER = ("| benchmark | preset | steps | seeds | train (s, mean) | modes covered (mean) | high-quality samples | KL | "
          "target met | per seed (modes, HQ, KL) | published anchor | date, machine, command |")


def render_row(r: dict, seconds: Optional[float], info: dict, command: str) -> str:
    hq = "" if r["high_quality"] is None else f"{100 * r['high_quality']:.1f}%"
    seeds = ",".join(str(s) for s in r["seeds"])
    budget = f", {seconds:.0f} s budget" if seconds else ""
    where = f"{time.strftime('%Y-%m-%d')}, {info['cpu']} ({info['logical_cores']} cores{budget}): `{command}`"
    return (f"| {r['bench']} | `{r['preset']}` | {r['steps']:,} | {seeds} | {r['train_s']:.0f} | "
            f"{r['modes']:g} / {TOTAL_MODES[r['bench']]} | {hq} | {r['kl']:.3f} | "
            f"{'yes' if r['met'] else '**no**'} | {_per_seed(r)} | {ANCHORS[r['bench']]} | {where} |")


def _old_rows(markdown: str) -> dict[str, str]:
    """The rows of an existing coverage block, by benchmark name (rows of an older layout are dropped)."""
    rows = {}
    for line in block_rows(markdown, "coverage", HEADER):
        name = line.split("|")[1].strip()
        if name in BENCHES:
            rows[name] = line
    return rows


def render_block(rows: list[dict], seconds: Optional[float], info: dict, command: str, previous: str = "") -> str:
    """The coverage block: this run's rows, plus the rows of benchmarks it did not rerun from ``previous``."""
    lines = _old_rows(previous)
    lines.update({r["bench"]: render_row(r, seconds, info, command) for r in rows})
    body = [lines[name] for name in BENCHES if name in lines]
    return "\n".join(["<!-- bench:coverage:start -->",
                      "Each row is written by the command in its last column; rerunning one benchmark replaces "
                      "its row only.", "", HEADER, "|" + "---|" * HEADER.count(" | ") + "---|", *body,
                      "<!-- bench:coverage:end -->"])


def main(benches: Sequence[str] = tuple(BENCHES), seconds: Optional[float] = None,
         out_root: Path = Path("runs/bench-coverage"), write: Optional[Path] = None, seeds: Sequence[int] = (0,),
         steps: Optional[int] = None, device: Optional[str] = None, command: str = "ganforge bench coverage") -> list[dict]:
    rows = []
    for b in benches:
        runs = [run_one(b, Path(out_root), seconds, s, steps=steps, device=device) for s in seeds]
        rows.append(summarize(b, runs))
    for r in rows:
        hq = "" if r["high_quality"] is None else f" hq={100 * r['high_quality']:.1f}%"
        print(f"{r['bench']:14s} modes={r['modes']:g}/{TOTAL_MODES[r['bench']]}{hq} kl={r['kl']:.3f} "
              f"steps={r['steps']} seeds={r['seeds']} target {'met' if r['met'] else 'NOT met'}")
    if write is not None:
        previous = Path(write).read_text(encoding="utf-8") if Path(write).is_file() else ""
        info = machine_info(torch.device("cpu"))
        write_block(Path(write), "coverage", render_block(rows, seconds, info, command, previous))
    return rows
