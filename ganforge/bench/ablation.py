"""``ganforge bench ablation``: which loss and regularizer keeps a GAN from collapsing, on the same benchmarks.

Every row trains one variant -- a loss, or one trick added to the plain GAN -- under the same step budget on the
ring of 8 and the grid of 25 Gaussians (MLP GAN) and, for three rows, on Stacked MNIST (DCGAN), and scores it as
``bench coverage`` does: modes covered, share of high-quality samples, KL. The plain GAN is the 2-D presets'
network without their recipe (no PacGAN, no R1, Adam (0.5, 0.999), constant learning rate); the last 2-D row is
the full recipe of ``ring8-mlp`` / ``grid25-mlp``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from ganforge.bench import coverage
from ganforge.bench.markdown import machine_info, write_block

PLAIN_2D = ["model.pack=1", "train.r1_gamma=0", "train.beta1=0.5", "train.beta2=0.999", "train.lr_decay=none"]
VARIANTS_2D: dict[str, tuple[str, list[str]]] = {  # name -> (what it is, overrides on top of the plain GAN)
    "GAN (non-saturating)": ("the seeds' loss", []),
    "minimax": ("Goodfellow's saturating G loss", ["train.loss=minimax"]),
    "LSGAN": ("least squares", ["train.loss=lsgan"]),
    "hinge": ("hinge", ["train.loss=hinge"]),
    "WGAN-GP": ("lambda 10, 5 critic steps, Adam 1e-4 (0, 0.9)",
                ["train.loss=wgan-gp", "train.d_steps=5", "train.lr_g=1e-4", "train.lr_d=1e-4", "train.beta1=0",
                 "train.beta2=0.9"]),
    "+ R1 0.1": ("R1 on reals", ["train.r1_gamma=0.1"]),
    "+ PacGAN2": ("D sees pairs", ["model.pack=2"]),
    "+ minibatch discrimination": ("Salimans et al., 16 kernels", ["model.minibatch_disc=16"]),
    "+ unrolled 5": ("Metz et al.", ["train.unrolled_steps=5"]),
    "+ feature matching": ("G matches D's features", ["train.g_objective=feature_matching"]),
    "ganforge recipe": ("PacGAN2 + R1 0.1 + Adam (0, 0.99) + lr decay (the preset)", None),
}
VARIANTS_STACKED: dict[str, tuple[str, list[str]]] = {
    "DCGAN": ("plain DCGAN, BCE", ["model.pack=1", "train.lr_decay=none"]),
    "DCGAN + minibatch std": ("minibatch standard-deviation channel", ["model.pack=1", "model.minibatch_std=true",
                                                                        "train.lr_decay=none"]),
    "PacDCGAN2": ("PacGAN2 (the preset)", None),
}
STEPS = {"ring8": 5000, "grid25": 10000, "stacked-mnist": 2000}


def variants(bench: str) -> dict[str, tuple[str, Optional[list[str]]]]:
    return VARIANTS_STACKED if bench == "stacked-mnist" else VARIANTS_2D


def run_variant(bench: str, name: str, out_root: Path, steps: int, seed: int, device: Optional[str]) -> dict:
    what, extra = variants(bench)[name]
    overrides = [] if extra is None else (PLAIN_2D if bench != "stacked-mnist" else []) + extra
    tag = "-" + "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
    res = coverage.run_one(bench, out_root, None, seed, steps=steps, device=device, overrides=overrides, tag=tag)
    return {**res, "variant": name, "what": what, "overrides": overrides}


def render_block(rows: list[dict], info: dict, command: str) -> str:
    head = ("| benchmark | variant | what | steps | train (s) | modes covered | high-quality samples | KL | "
            "overrides |")
    lines = ["<!-- bench:ablation:start -->", f"`{command}`  ",
             f"{info['cpu']}, {info['logical_cores']} cores, torch {info['torch']}; seed {rows[0]['seed']}; one "
             "training per row.", "", head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        hq = "" if r["high_quality"] is None else f"{100 * r['high_quality']:.1f}%"
        sets = " ".join(f"`{o}`" for o in r["overrides"]) or "(the preset)"
        lines.append(f"| {r['bench']} | {r['variant']} | {r['what']} | {r['steps']:,} | {r['train_s']:.0f} | "
                     f"{r['modes']:g} / {coverage.TOTAL_MODES[r['bench']]} | {hq} | {r['kl']:.3f} | {sets} |")
    return "\n".join(lines + ["<!-- bench:ablation:end -->"])


def main(benches: Sequence[str] = tuple(STEPS), steps: Optional[int] = None, seed: int = 0,
         out_root: Path = Path("runs/bench-ablation"), write: Optional[Path] = None, device: Optional[str] = None,
         only: Sequence[str] = (), command: str = "ganforge bench ablation") -> list[dict]:
    rows = []
    for bench in benches:
        for name in variants(bench):
            if only and name not in only:
                continue
            r = run_variant(bench, name, out_root, steps or STEPS[bench], seed, device)
            hq = "" if r["high_quality"] is None else f" hq={100 * r['high_quality']:.1f}%"
            print(f"{bench:14s} {name:28s} modes={r['modes']:g}{hq} kl={r['kl']:.3f} ({r['train_s']:.0f}s)",
                  flush=True)
            rows.append(r)
            if write is not None:  # after every row: a long bench that is stopped keeps what it measured
                write_block(Path(write), "ablation", render_block(rows, machine_info(torch.device("cpu")), command))
    return rows
