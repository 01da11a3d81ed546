"""``ganforge bench colour``: which recipe draws the best colour images from a few thousand, per CPU second?

Every variant trains on the train split of the labelled icon set (``bench/colorset.py``, split by icon name) on one
thread with its final evaluation off, and is scored here on icons no run saw: FID[ssl-conv] and precision / recall
of ``n`` EMA samples against the validation split (what a recipe may be chosen by) and against the test split
(reported, never tuned on). ``ssl-conv`` is what ``auto`` picks for a user's folder, fitted on each reference.
A grid of each variant's samples is saved beside the runs, so a person can say whether the objects are there.

Variants are compared at equal CPU time: each names its steps, set so that its run costs about what the
baseline's (``dcgan-small`` at its own budget) does on this machine; the table shows what each really took.
A variant's preset fixes its side: the 64 px variants (one command takes one side) train and are scored on the
same icons drawn at 64 px, against ``dcgan-small64`` at ten CPU minutes (its own 3,000 steps cost ~22 on an AMD EPYC).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ganforge.errors import UserError

Log = Callable[[str], None]


def rpgan(gamma: float) -> list[str]:
    """R3GAN's loss with R1 = R2 = gamma, lazily every 4 steps, no label smoothing."""
    return ["train.loss=rpgan", f"train.r1_gamma={gamma:g}", f"train.r2_gamma={gamma:g}", "train.r1_every=4",
            "train.real_label=1.0"]


# dcgan-small-colour's recipe on another preset's nets: R3GAN's loss, penalties every 16, Adam (0, 0.99), no ADA
COLOUR_RECIPE = [*rpgan(0.1), "train.r1_every=16", "train.augment=none", "train.beta1=0", "train.beta2=0.99"]
# 64 px at ten CPU minutes of one AMD EPYC thread, from 200 steps timed (78 and 84 CPU s with start-up); in full
# runs the two steps cost within 5% of each other (docs/BENCHMARKS.md, "Colour quality at 64 px")
STEPS64, COLOUR64 = 1700, 1550

# (name, preset, steps or None for the preset's own, --set overrides)
VARIANTS = {
    "dcgan-small": ("dcgan-small", None, []),  # ~180 CPU s on one Xeon thread: the budget every variant gets
    "dcgan-small-no-ada": ("dcgan-small", None, ["train.augment=none"]),
    "dcgan-small-diffaugment": ("dcgan-small", None,
                                ["train.augment=none", "train.diffaugment=color,translation,cutout"]),
    "dcgan-small-rpgan": ("dcgan-small", 2150, rpgan(0.1)),  # the penalties cost ~40% a step
    "dcgan-small-rpgan-g1": ("dcgan-small", 2150, rpgan(1.0)),
    "dcgan-small-rpgan-no-ada": ("dcgan-small", 2900, [*rpgan(0.1), "train.augment=none"]),  # no ADA: 25% cheaper
    # around the best recipe so far, one knob each (chosen on the validation icons, two seeds):
    "rpgan-no-ada-ema999": ("dcgan-small", 2900, [*rpgan(0.1), "train.augment=none", "train.ema.decay=0.999"]),
    "rpgan-no-ada-lr1e-3": ("dcgan-small", 2900, [*rpgan(0.1), "train.augment=none", "train.lr_g=0.001",
                                                  "train.lr_d=0.001"]),
    "rpgan-no-ada-w48": ("dcgan-small", 1450, [*rpgan(0.1), "train.augment=none", "model.g_width=48",
                                               "model.d_width=48"]),  # ~2x the work a step
    "rpgan-no-ada-b64": ("dcgan-small", 1450, [*rpgan(0.1), "train.augment=none", "train.batch_size=64"]),
    # two of R3GAN's own optimiser settings, one each: the learning rate decayed over the run, Adam's betas (0, 0.99)
    "rpgan-no-ada-cosine": ("dcgan-small", 2900, [*rpgan(0.1), "train.augment=none", "train.lr_decay=cosine"]),
    "rpgan-no-ada-adam0": ("dcgan-small", 2900, [*rpgan(0.1), "train.augment=none", "train.beta1=0",
                                                 "train.beta2=0.99"]),
    "dcgan-small-colour": ("dcgan-small-colour", None, []),  # the preset: lazy16's recipe at 3,100 steps
    # rpgan-no-ada-adam0 with the penalties every 16 steps (StyleGAN2's lazy interval) instead of 4: their cost was
    # what kept it from dcgan-small's CPU time; --scale 1.069 (3,100 steps) is the preset
    "dcgan-small-colour-lazy16": ("dcgan-small-colour", 2900, ["train.r1_every=16"]),
    "stylegan-small": ("stylegan-small", 500, []),
    "r3gan-small": ("r3gan-small", 640, []),
    # 64 px: the 64-px presets, each at about ten CPU minutes of one AMD EPYC thread
    "dcgan-small64": ("dcgan-small64", STEPS64, []),
    "dcgan-small64-colour": ("dcgan-small64", COLOUR64, COLOUR_RECIPE),
}
BASELINES = {32: "dcgan-small", 64: "dcgan-small64"}  # per side: the variant every other is compared with


def budget(spec: tuple, scale: float) -> int:
    """A variant's steps at ``scale`` times the bench's budget (scale 1: about dcgan-small's own CPU time)."""
    from ganforge.config import load_config

    preset, steps, _ = spec
    return max(1, round((steps or load_config(preset).train.steps) * scale))


def side(name: str) -> int:
    """The variant's image side, from its preset."""
    from ganforge.config import load_config

    return load_config(VARIANTS[name][0]).model.image_size


def one_side(names: Sequence[str]) -> int:
    """The one side all ``names`` train at: a table compares runs scored on the same images."""
    sides = {n: side(n) for n in names}
    if len(set(sides.values())) != 1:
        raise UserError("bench colour compares runs at one image side; these differ: "
                        + ", ".join(f"{n} {s} px" for n, s in sides.items()) + ": run each side on its own")
    return next(iter(sides.values()))


def run_folder(root: Path, name: str, seed: int, scale: float) -> Path:
    return Path(root) / (f"{name}-s{seed}" if scale == 1 else f"{name}-s{seed}-x{scale:g}")


def _train(name: str, spec: tuple, train_folder: Path, root: Path, seed: int, scale: float, log: Log) -> dict:
    from ganforge.bench.recipe import train_or_reuse

    preset, steps, sets = spec
    sets = [f"data.spec=folder:{train_folder}", "eval.final=false", *sets]
    steps = steps if scale == 1 else budget(spec, scale)
    row = train_or_reuse(name, preset, sets, run_folder(root, name, seed, scale), seed, steps,
                         lambda s: log(f"colour: {s}"))
    return {**row, "variant": name}


def _score(row: dict, refs: dict[str, Path], n: int, seed: int, log: Log) -> dict:
    from ganforge.apps.evaluate import evaluate
    from ganforge.apps.sampling import load_generator
    from ganforge.viz import save_grid

    for split in ("val", "test"):
        m = evaluate(row["run"], f"folder:{refs[split]}", ["fid", "prc"], n=n, extractor="ssl-conv", seed=seed,
                     log=lambda s: None)["metrics"]
        row[split] = {"fid": m["fid[ssl-conv]"], "precision": m["precision[ssl-conv]"],
                      "recall": m["recall[ssl-conv]"]}
    grid = Path(row["run"]) / "bench_grid.png"
    save_grid(load_generator(row["run"], "cpu").sample(64, seed=seed), grid, nrow=8)
    row["grid"] = str(grid)
    log(f"colour: {row['variant']}: fid[ssl-conv] val {row['val']['fid']:.1f}, test {row['test']['fid']:.1f}")
    return row


def block_name(scale: float, size: int = 32) -> str:
    """Each side and budget keeps its own table: ``colour`` at 32 px and the bench's budget, ``colour-x3.3`` at 3.3
    times it, ``colour64`` at 64 px."""
    name = "colour" if size == 32 else f"colour{size}"
    return name if scale == 1 else f"{name}-x{scale:g}"


def render(rows: Sequence[dict], info: dict, command: str, scale: float = 1.0, size: int = 32) -> str:
    from ganforge.bench.markdown import markers

    start, end = markers(block_name(scale, size))
    baseline = BASELINES[size]
    base = next((r for r in rows if r["variant"] == baseline), None)
    lines = [start, "", f"{time.strftime('%Y-%m-%d')}; {info['cpu']}, {info['logical_cores']} logical cores, torch "
             f"{info['torch']}, 1 thread per run. Command: `{command}`", "",
             f"| variant | steps | CPU s | FID[ssl-conv] val | vs {baseline} | FID test | precision / recall (test) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        gain = f"{r['val']['fid'] / base['val']['fid'] - 1:+.0%}" if base and r is not base else "-"
        lines.append(f"| {r['variant']} | {r['steps']:,} | {r['cpu_s']:.0f} | {r['val']['fid']:.1f} | {gain} | "
                     f"{r['test']['fid']:.1f} | {r['test']['precision']:.2f} / {r['test']['recall']:.2f} |")
    return "\n".join(lines + ["", end])


def main(variants: Sequence[str] = tuple(VARIANTS), root: Path = Path("runs/bench-colour"), n: int = 1000,
         seed: int = 0, jobs: int = 2, write: Optional[Path] = None, command: str = "ganforge bench colour",
         scale: float = 1.0, log: Log = print) -> list[dict]:
    from ganforge.bench.markdown import machine_info, write_block

    from ganforge.bench.colorset import split_folders

    size = one_side(variants)
    folders = split_folders(root, ("train", "val", "test"), size)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = list(pool.map(lambda v: _train(v, VARIANTS[v], folders["train"], root, seed, scale, log), variants))
    rows = [_score(r, folders, n, seed, log) for r in rows]
    block = render(rows, machine_info(torch.device("cpu")), command, scale, size)
    log(block)
    if write is not None:
        write_block(Path(write), block_name(scale, size), block)
    return rows
