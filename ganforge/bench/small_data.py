"""``ganforge bench small-data``: what augmentation and fine-tuning buy when the training set is small.

Three experiments, every run in its own process on one thread (``recipe.train_variant``), ``--jobs`` at a time:

- **digits**: ``dcgan-mnist`` at its own budget on 100 / 500 / 2,000 of the 4,000 training digits (``data.limit``:
  a fixed, class-balanced subset; 4,000: the whole split, the yardstick) with each augmentation of ``AUGMENTS``,
  over seeds: mean and spread per row;
- **transfer**: a run on the training digits 0-4, then 100 images of digits 5-9 trained from scratch, fine-tuned
  from it (``--init-from``), and fine-tuned with D's first blocks frozen (``train.freeze_d``), same budget;
- **color**: the small presets on a folder of colour icons rendered from the Debian icon themes installed on the
  machine (``icon_folder``), with their sample grids.

Digit runs are scored on the 1,000 held-out test digits (digits 5-9 of them for transfer), none of which any
run trained on: in-domain FID and precision/recall in the ``mnist-cnn`` feature space, and class coverage.
A digits run that finished under the same ``--out`` with the same settings (``bench_row.json`` in its folder) is
scored from there, not trained again: an interrupted bench goes on where it stopped, and more seeds add rows.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import statistics
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ganforge.bench.markdown import machine_info, write_block
from ganforge.bench.recipe import train_or_reuse, train_variant
from ganforge.errors import UserError

SIZES = (100, 500, 2000)
FULL = 4000  # the embedded training split
ADA = ["train.augment=ada"]
AUGMENTS = {  # name -> --set overrides; ADA's speed follows the run's length unless ada_kimg is set
    "none": [],
    "diffaugment": ["train.diffaugment=color,translation,cutout"],
    "ada": ADA,
    "ada-paper": [*ADA, "train.ada_kimg=500"],  # the paper's speed: 0 -> 1 in 500,000 images
    "ada-bg": [*ADA, "train.ada_pipe=bg"],  # geometric only: no colour or luma flips
    "ada-t0.8": [*ADA, "train.ada_target=0.8"],
    "ada-fast": [*ADA, "train.ada_kimg=5"],
}
DEFAULT_AUGMENTS = ("none", "ada", "ada-paper", "diffaugment")
DIGIT_PRESET = "dcgan-mnist"
SOURCE_CLASSES, TARGET_CLASSES = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
ICON_THEMES = Path("/usr/share/icons")
ICON_PACKAGES = "tango-icon-theme gnome-icon-theme oxygen-icon-theme faenza-icon-theme"
EXPERIMENTS = ("digits", "transfer", "color")
Log = Callable[[str], None]
SCORED_HERE = ["eval.final=false"]  # every run is scored by this bench on held-out digits instead


def _classes(ks: Sequence[int]) -> str:
    return "data.classes=[" + ",".join(map(str, ks)) + "]"


def every(n: int, batch: int = 32, steps: int = 250) -> list[str]:
    """Sample grids and checkpoints about every ``steps`` steps: on 100 images an epoch is 3 steps, and a grid,
    a class count and a checkpoint after each would cost more than the training."""
    k = max(1, round(steps * batch / n))
    return [f"train.sample_every={k}", f"train.checkpoint_every={k}"]


def digit_variants(sizes: Sequence[int], augments: Sequence[str], steps: Optional[int]) -> list[tuple[str, list[str]]]:
    """(name, --set overrides) of every digits run: each size x each augmentation; 4,000 is the whole split."""
    base = ["data.split=train", *([] if steps is None else [f"train.steps={steps}"]), *SCORED_HERE]
    return [(f"n{n}-{aug}", [*base, *([] if n >= FULL else [f"data.limit={n}"]), *every(n), *AUGMENTS[aug]])
            for n in sizes for aug in augments]


# ------------------------------------------------------------------ scoring on held-out digits

def test_digits(classes: Optional[Sequence[int]] = None) -> torch.Tensor:
    """The 1,000 embedded test digits at 32 px (or those of some classes): never trained on by any run here."""
    from ganforge.data import build_spec

    ds = build_spec("mnist-embedded", channels=1, size=32, split="test")
    x, y = ds.tensor, torch.as_tensor(ds.labels)
    if classes is not None:
        x = x[torch.isin(y, torch.tensor(list(classes)))]
    return x


def score_run(run: Path, reference: torch.Tensor, n: int = 1000, seed: int = 0) -> dict:
    """In-domain FID, precision/recall and class coverage of ``n`` samples against ``reference``."""
    from ganforge.apps.evaluate import generated_source
    from ganforge.metrics.extractors import get_extractor
    from ganforge.metrics.pipeline import ImageSource, collect, compute

    ext = get_extractor("mnist-cnn", torch.device("cpu"))
    gen = collect(generated_source(run, n, seed=seed), ext, 250, keep_features=True)
    ref_src = ImageSource("test digits", 1, 32, 32, len(reference),
                          lambda bs: (reference[i:i + bs] for i in range(0, len(reference), bs)))
    ref = collect(ref_src, ext, 250, keep_features=True)
    m = compute(["fid", "prc", "coverage"], gen, ref, "mnist-cnn", "mnist-embedded", seed=seed)
    return {"fid": m["fid[mnist-cnn]"], "precision": m["precision[mnist-cnn]"], "recall": m["recall[mnist-cnn]"],
            "classes": int(m["classes_covered"]), "n_eval": n, "n_ref": len(reference)}


# ------------------------------------------------------------------ the experiments

def _train_all(jobs: list[tuple[str, list[str], Path, str, list[str]]], seed: int, parallel: int, log: Log) -> list[dict]:
    """Train (name, overrides, out, preset, extra CLI args) side by side; rows in the order given."""
    def one(job) -> dict:
        name, sets, out, preset, extra = job
        row = train_variant(name, sets, out, seed, preset, extra_args=extra)
        log(f"small-data: {name}: {row['steps']} steps, {row['cpu_s']} CPU s")
        return {**row, "sets": sets, "preset": preset, "extra": extra}

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(one, jobs))


def _final_p(run: Path) -> Optional[float]:
    """ADA's p at the end of a run (None without ADA)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return next((r["ada_p"] for r in reversed(rows) if "ada_p" in r), None)  # events come after the last stats


def _digit_run(name: str, sets: list[str], out: Path, seed: int, reference: torch.Tensor, log: Log) -> dict:
    """One digits run, trained (or found finished with the same settings under ``out``) and scored."""
    row = train_or_reuse(name, DIGIT_PRESET, sets, out, seed, log=lambda s: log(f"small-data: seed {seed}: {s}"))
    if "fid" not in row:
        row.update(score_run(out, reference, seed=seed), ada_p=_final_p(out))
        (out / "bench_row.json").write_text(json.dumps(row))
    log(f"small-data: {name} seed {seed}: {row['steps']} steps, {row['cpu_s']} CPU s, fid {row['fid']:.2f}")
    return row


def run_digits(root: Path, sizes: Sequence[int], augments: Sequence[str], seeds: int, steps: Optional[int],
               parallel: int, log: Log, first_seed: int = 0) -> list[dict]:
    """Every (size, augmentation, seed) run, seeds ``first_seed`` .. ``first_seed + seeds - 1`` (a later seed can
    be added on its own and merged by hand); one row per (size, augmentation) with its seeds' rows in ``runs``."""
    reference = test_digits()
    variants = digit_variants(sizes, augments, steps)
    jobs = [(name, sets, root / name / f"seed{s}", s) for name, sets in variants
            for s in range(first_seed, first_seed + seeds)]
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        runs = list(pool.map(lambda j: _digit_run(*j, reference, log), jobs))
    return [aggregate(name, [r for r, j in zip(runs, jobs) if j[0] == name]) for name, _ in variants]


def _spread(values: list[float]) -> float:
    """The seeds' sample standard deviation (0 for one seed)."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(name: str, runs: list[dict]) -> dict:
    """A row over seeds: mean and spread of FID, means of the rest, the fewest classes any seed covered."""
    fids = [r["fid"] for r in runs]
    ps = [r["ada_p"] for r in runs if r.get("ada_p") is not None]
    return {"variant": name, "runs": runs, "seeds": len(runs), "steps": runs[0]["steps"],
            "cpu_s": statistics.mean(r["cpu_s"] for r in runs), "fid": statistics.mean(fids), "fid_sd": _spread(fids),
            "precision": statistics.mean(r["precision"] for r in runs),
            "recall": statistics.mean(r["recall"] for r in runs), "classes": min(r["classes"] for r in runs),
            "ada_p": statistics.mean(ps) if ps else None}


def run_transfer(root: Path, steps: Optional[int], target_steps: int, n: int, seed: int, parallel: int,
                 log: Log) -> list[dict]:
    """Source run on digits 0-4, then ``n`` images of 5-9: scratch, fine-tuned, fine-tuned + FreezeD."""
    source = root / "source-0to4"
    subset = [*SCORED_HERE, "guard.class_samples=0"]  # the class watch would count the dropped classes as faded
    budget = [] if steps is None else [f"train.steps={steps}"]
    [src] = _train_all([("source-0to4", ["data.split=train", _classes(SOURCE_CLASSES), *budget, *subset, *every(2000)],
                         source, "dcgan-mnist", [])], seed, 1, log)
    target = ["data.split=train", _classes(TARGET_CLASSES), f"data.limit={n}", f"train.steps={target_steps}", *subset,
              *every(n)]
    init = ["--init-from", str(source)]
    jobs = [("scratch", target, root / "scratch", "dcgan-mnist", []),
            ("fine-tuned", target, root / "fine-tuned", "dcgan-mnist", init),
            ("fine-tuned+freezeD", [*target, "train.freeze_d=2"], root / "fine-tuned-freezed", "dcgan-mnist", init)]
    rows = _train_all(jobs, seed, parallel, log)
    reference = test_digits(TARGET_CLASSES)
    for row in rows:
        row.update(score_run(Path(row["run"]), reference, seed=seed))
        log(f"small-data: transfer {row['variant']}: fid {row['fid']:.1f}")
    src.update(score_run(source, test_digits(SOURCE_CLASSES), seed=seed), variant="source: digits 0-4 (scored on test 0-4)")
    return [src, *rows]


def icon_folder(out: Path, themes: Path = ICON_THEMES, min_side: int = 48) -> int:
    """Copy one PNG per icon (the largest of at least ``min_side`` px) of every installed theme into ``out``.

    Symbolic (one-colour) icons and exact duplicates are left out; transparent pixels are composited on white when the folder is read.
    Returns how many images the folder holds.
    """
    from PIL import Image

    best: dict[tuple[str, str], tuple[int, Path]] = {}
    for path in sorted(themes.glob("*/**/*.png")):
        if "symbolic" in path.name or "symbolic" in str(path.parent):
            continue
        try:
            with Image.open(path) as img:
                side = min(img.size)
        except Exception:
            continue
        key = (path.relative_to(themes).parts[0], path.stem)
        if side >= min_side and side > best.get(key, (0, path))[0]:
            best[key] = (side, path)
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()  # themes link one picture under many names: exact duplicates are kept once
    for (theme, stem), (_, path) in sorted(best.items()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            shutil.copyfile(path, out / f"{theme}-{stem}.png")
    return len(seen)


def run_color(root: Path, presets: Sequence[str], steps: Optional[int], seed: int, parallel: int, log: Log) -> list[dict]:
    folder = root / "icons"
    count = icon_folder(folder)
    if count < 500:
        raise UserError(f"only {count} colour icons found under {ICON_THEMES}: install some icon themes first "
                        f"(apt-get install {ICON_PACKAGES})")
    log(f"small-data: {count:,} colour icons in {folder}")
    budget = [] if steps is None else [f"train.steps={steps}"]
    jobs = [(p, [f"data.spec=folder:{folder}", "eval.final=false", *budget, *every(count)], root / p, p, [])
            for p in presets]
    rows = _train_all(jobs, seed, parallel, log)
    for row in rows:
        row.update(images=count, grid=str(Path(row["run"]) / "real_vs_fake.png"))
    return rows


# ------------------------------------------------------------------ the tables

def _size_aug(variant: str) -> tuple[int, str]:
    n, aug = variant[1:].split("-", 1)
    return int(n), aug


def verdict(row: dict, none: dict) -> str:
    """How an augmented row compares with the unaugmented one of its size: a difference counts when it is larger
    than the two rows' spreads together."""
    diff, noise = round(row["fid"] - none["fid"], 1) + 0.0, row["fid_sd"] + none["fid_sd"]  # + 0.0: no "-0.0"
    if row["seeds"] < 2 or none["seeds"] < 2:
        return f"{diff:+.1f} FID against none (one seed: no spread to judge by)"
    if abs(diff) <= noise:
        return f"{diff:+.1f} FID against none, within the seeds' spread ({noise:.1f})"
    return f"{diff:+.1f} FID against none: {'worse' if diff > 0 else 'better'} beyond the seeds' spread ({noise:.1f})"


def targets(digits: list[dict], transfer: list[dict]) -> list[str]:
    """Each augmentation against none at its size, then the transfer target, as measured."""
    none = {_size_aug(r["variant"])[0]: r for r in digits if _size_aug(r["variant"])[1] == "none"}
    out = [f"- {n:,} digits, {aug}: {verdict(r, none[n])}." for r in digits
           for n, aug in [_size_aug(r["variant"])] if aug != "none" and n in none]
    fid = {r["variant"]: r["fid"] for r in transfer}
    if {"scratch", "fine-tuned"} <= fid.keys():
        gain = fid["scratch"] / fid["fine-tuned"]
        out.append(f"- 100 images of 5-9: fine-tuning's FID {gain:.2f}x better than from scratch (target >= 2x: "
                   f"{'met' if gain >= 2 else 'missed'}).")
    return out


def _digit_line(r: dict) -> str:
    n, aug = _size_aug(r["variant"])
    per_seed = ", ".join(f"{x['fid']:.1f}" for x in r["runs"])
    p = "" if r["ada_p"] is None else f"{r['ada_p']:.2f}"
    return (f"| {n:,} | {aug} | {r['seeds']} | {r['steps']:,} | {r['cpu_s']:.0f} | **{r['fid']:.1f} ± "
            f"{r['fid_sd']:.1f}** | {per_seed} | {r['precision']:.3f} | {r['recall']:.3f} | {r['classes']} / 10 | {p} |")


def render(digits: list[dict], transfer: list[dict], color: list[dict], info: dict, command: str) -> str:
    lines = ["<!-- bench:small-data:start -->",
             f"`{command}`: {_dt.date.today().isoformat()}, {info['cpu']} ({info['logical_cores']} logical cores, "
             f"load {info['load_avg']} when the table was written), each run on one thread; CPU s are the runs' own. "
             "Scored on held-out test digits (1,000 samples of the final EMA generator, `mnist-cnn` features); "
             "FID as mean ± standard deviation over the seeds."]
    if digits:
        lines += ["", "| training digits | augmentation | seeds | steps | CPU s | FID | FID per seed | precision | "
                  "recall | classes (fewest) | ADA's final p |", "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
        lines += [_digit_line(r) for r in digits]
    if transfer:
        lines += ["", "| transfer to 100 images of digits 5-9 | steps | CPU s | FID (test 5-9) | precision | recall | "
                  "classes |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in transfer:
            lines.append(f"| {r['variant']} | {r['steps']:,} | {r['cpu_s']:.0f} | {r['fid']:.1f} | {r['precision']:.3f} "
                         f"| {r['recall']:.3f} | {r['classes']} |")
    lines += ["", *targets(digits, transfer)] if digits or transfer else []
    if color:
        lines += ["", "| colour icons | images | steps | CPU s | pictures |", "|---|---:|---:|---:|---|"]
        for r in color:
            lines.append(f"| {r['variant']} | {r['images']:,} | {r['steps']:,} | {r['cpu_s']:.0f} | `{r['grid']}` |")
    lines.append("<!-- bench:small-data:end -->")
    return "\n".join(lines)


def main(experiments: Sequence[str] = EXPERIMENTS, out_root: Path = Path("runs/bench-small-data"),
         write: Optional[Path] = None, seed: int = 0, jobs: int = 1, steps: Optional[int] = None,
         transfer_steps: int = 1000, color_presets: Sequence[str] = ("dcgan-small", "dcgan-small64"),
         color_steps: Optional[int] = None, sizes: Sequence[int] = SIZES, augments: Sequence[str] = DEFAULT_AUGMENTS,
         seeds: int = 3, first_seed: int = 0, command: str = "ganforge bench small-data",
         log: Log = lambda s: print(s, file=sys.stderr)) -> str:
    """``steps``/``color_steps`` None: the presets' own budgets. Digits runs go to ``out_root``/digits, where
    finished ones are reused; the transfer and colour runs to a new dated folder."""
    root, dated = Path(out_root), Path(out_root) / time.strftime("%Y%m%d-%H%M%S")
    digits = (run_digits(root / "digits", sizes, augments, seeds, steps, jobs, log, first_seed)
              if "digits" in experiments else [])
    transfer = (run_transfer(dated / "transfer", steps, transfer_steps, 100, seed, jobs, log)
                if "transfer" in experiments else [])
    color = run_color(dated / "color", color_presets, color_steps, seed, jobs, log) if "color" in experiments else []
    block = render(digits, transfer, color, machine_info(torch.device("cpu")), command)
    print(block)
    if write is not None:
        write_block(Path(write), "small-data", block)
    return block
