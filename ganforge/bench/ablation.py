"""``ganforge bench ablation``: which loss and regularizer keeps a GAN from collapsing, on the same benchmarks.

Every row trains one variant -- a loss, or one trick added to the plain GAN -- under the same step budget on the
ring of 8 and the grid of 25 Gaussians (MLP GAN) and, for three rows, on Stacked MNIST (DCGAN), and scores it as
``bench coverage`` does: modes covered, share of high-quality samples, KL. The plain GAN is the 2-D presets'
network without their recipe (no PacGAN, no R1, Adam (0.5, 0.999), constant learning rate); the last 2-D row is
the full recipe of ``ring8-mlp`` / ``grid25-mlp``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from ganforge.bench import coverage
from ganforge.bench.markdown import block_rows, machine_info, write_block

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


def run_variant(bench: str, name: str, out_root: Path, steps: int, seed: int, device: Optional[str],
                common: Sequence[str] = ()) -> dict:
    """One training of ``name``; ``common``: overrides added to every row (e.g. ``train.precision=fp32``)."""
    what, extra = variants(bench)[name]
    overrides = ([] if extra is None else (PLAIN_2D if bench != "stacked-mnist" else []) + extra) + list(common)
    tag = "-" + "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
    res = coverage.run_one(bench, out_root, None, seed, steps=steps, device=device, overrides=overrides, tag=tag)
    own = None if extra is None and not common else (extra or []) + list(common)
    return {**res, "variant": name, "what": what, "own": own, "preset_recipe": extra is None}


HEADER = ("| benchmark | variant | what | `--set` on top of the plain GAN | steps | seed | train (s) | modes covered | "
          "high-quality samples | KL | machine, command |")


def render_row(r: dict, info: dict, command: str) -> str:
    hq = "" if r["high_quality"] is None else f"{100 * r['high_quality']:.1f}%"
    sets = " ".join(f"`{o}`" for o in r["own"] or []) or "(none)"
    if r.get("preset_recipe", r["own"] is None):
        sets = "the preset's own recipe" + (f" + {sets}" if r["own"] else "")
    return (f"| {r['bench']} | {r['variant']} | {r['what']} | {sets} | {r['steps']:,} | {r['seed']} | "
            f"{r['train_s']:.0f} | {r['modes']:g} / {coverage.TOTAL_MODES[r['bench']]} | {hq} | {r['kl']:.3f} | "
            f"{time.strftime('%Y-%m-%d')}, {info['cpu']} ({info['logical_cores']} cores): `{command}` |")


def _old_rows(markdown: str) -> dict[tuple[str, str], str]:
    """The rows of an existing ablation block by (benchmark, variant); rows of an older layout are dropped."""
    rows = {}
    for line in block_rows(markdown, "ablation", HEADER):
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 3 and cells[2] in variants(cells[1]):
            rows[(cells[1], cells[2])] = line
    return rows


def render_block(rows: list[dict], info: dict, command: str, previous: str = "") -> str:
    """The ablation block: this run's rows, plus the rows it did not rerun from ``previous``, in table order."""
    lines = _old_rows(previous)
    lines.update({(r["bench"], r["variant"]): render_row(r, info, command) for r in rows})
    order = [(b, v) for b in STEPS for v in variants(b)]
    plain = " ".join(f"`{o}`" for o in PLAIN_2D)
    return "\n".join(["<!-- bench:ablation:start -->",
                      f"The plain GAN on ring8 / grid25 is the 2-D preset with {plain}; on Stacked MNIST it is "
                      "the preset with the overrides shown. Each row is written by the command in its last column "
                      "(one training); rerunning a variant replaces its row only.", "", HEADER,
                      "|" + "---|" * HEADER.count(" | ") + "---|", *[lines[k] for k in order if k in lines],
                      "<!-- bench:ablation:end -->"])


def main(benches: Sequence[str] = tuple(STEPS), steps: Optional[int] = None, seed: int = 0,
         out_root: Path = Path("runs/bench-ablation"), write: Optional[Path] = None, device: Optional[str] = None,
         only: Sequence[str] = (), command: str = "ganforge bench ablation", common: Sequence[str] = ()) -> list[dict]:
    rows = []
    for bench in benches:
        for name in variants(bench):
            if only and name not in only:
                continue
            r = run_variant(bench, name, out_root, steps or STEPS[bench], seed, device, common)
            hq = "" if r["high_quality"] is None else f" hq={100 * r['high_quality']:.1f}%"
            print(f"{bench:14s} {name:28s} modes={r['modes']:g}{hq} kl={r['kl']:.3f} ({r['train_s']:.0f}s)",
                  flush=True)
            rows.append(r)
            if write is not None:  # after every row: a long bench that is stopped keeps what it measured
                previous = Path(write).read_text(encoding="utf-8") if Path(write).is_file() else ""
                write_block(Path(write), "ablation", render_block([r], machine_info(torch.device("cpu")), command,
                                                                  previous))
    return rows
