"""``ganforge bench style``: ProGAN and StyleGAN against the default DCGAN at the same number of training images,
and what truncation does to StyleGAN's precision and recall.

Each preset trains in its own process for as many steps as it takes to show the same number of real images
(ProGAN's per-resolution batches are counted as they are used), then its final generator (EMA) is scored on
10,000 samples against the 5,000 embedded digits with the in-domain extractor: FID, KID, precision/recall and class
coverage. The truncation sweep samples the StyleGAN run at psi 0.5 ... 1.0 (w pulled towards the tracked mean w):
precision should rise and recall fall as psi shrinks (Karras et al. 2019; Kynkaanniemi et al. 2019).
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from ganforge.bench.markdown import machine_info, write_block
from ganforge.bench.quality import final_grid, run_preset

PRESETS = ("dcgan-mnist", "progan-mnist", "stylegan-mnist")
PSIS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
METRICS = ["fid", "kid", "prc", "coverage"]


def steps_for_images(preset: str, images: int, extra: Sequence[str] = ()) -> int:
    """Training steps of ``preset`` that show ``images`` real images (the family may use part of each batch)."""
    from ganforge.config import load_config

    cfg = load_config(preset, list(extra))
    if cfg.model.family != "progan":
        return math.ceil(images / cfg.train.batch_size)
    from ganforge.families.progan import GrowthSchedule  # its batch changes with the resolution

    schedule, lo, hi = GrowthSchedule.of(cfg), 0, images
    while lo < hi:  # the first step count whose images reach ``images``
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if schedule.images_at_step(mid) < images else (lo, mid)
    return lo


def scores(source, n: int, seed: int) -> dict:
    from ganforge.apps.evaluate import evaluate

    res = evaluate(source, "mnist-embedded", METRICS, n=n, seed=seed, log=lambda s: None)
    m = res["metrics"]
    return {"fid": m["fid[mnist-cnn]"], "kid": m["kid[mnist-cnn]"], "precision": m["precision[mnist-cnn]"],
            "recall": m["recall[mnist-cnn]"], "density": m["density[mnist-cnn]"],
            "coverage": m["coverage[mnist-cnn]"], "classes": int(m["classes_covered"]), "class_kl": m["class_kl"]}


def truncation_sweep(run: Path, psis: Sequence[float], n: int, seed: int) -> list[dict]:
    """Scores of ``n`` samples of a style-based run at each psi (constant noise)."""
    from ganforge import viz
    from ganforge.apps.sampling import load_generator

    g = load_generator(run, device="cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for psi in psis:
            path = Path(tmp) / f"psi{psi}.npz"
            viz.save_npz(g.sample(n, seed=seed, truncation=psi), path)
            rows.append({"psi": psi, **scores(path, n, seed)})
            print(f"psi={psi:.1f} fid={rows[-1]['fid']:.2f} precision={rows[-1]['precision']:.3f} "
                  f"recall={rows[-1]['recall']:.3f}", file=sys.stderr, flush=True)
    return rows


def render_block(rows: list[dict], sweep: list[dict], images: int, picture: Path, doc: Path, info: dict,
                 command: str, n: int = 10_000) -> str:
    rel = os.path.relpath(picture, doc.parent)
    lines = ["<!-- bench:style:start -->",
             f"`{command}`  ", f"{time.strftime('%Y-%m-%d')}; {info['cpu']} ({info['logical_cores']} cores), "
             f"torch {info['torch']}, device cpu. Each preset shown {images:,} real images; {n:,} samples of the "
             "final (EMA) generator against the 5,000 embedded digits, extractor `mnist-cnn`.", "",
             f"![{', '.join(r['preset'] for r in rows)}]({rel})", "",
             "| preset | steps | train (s) | fid[mnist-cnn] | kid[mnist-cnn] | precision | recall | density | "
             "coverage | classes covered | class KL |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['preset']}` | {r['steps']:,} | {r['wall_s']:.0f} | {r['fid']:.2f} | {r['kid']:.3f} | "
                     f"{r['precision']:.3f} | {r['recall']:.3f} | {r['density']:.3f} | {r['coverage']:.3f} | "
                     f"{r['classes']} / 10 | {r['class_kl']:.3f} |")
    if sweep:
        lines += ["", "Truncation (`ganforge sample RUN --truncation PSI`, constant noise), the StyleGAN run above:", "",
                  "| psi | fid[mnist-cnn] | precision | recall | density | coverage | classes covered |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {s['psi']:.1f} | {s['fid']:.2f} | {s['precision']:.3f} | {s['recall']:.3f} | "
                  f"{s['density']:.3f} | {s['coverage']:.3f} | {s['classes']} / 10 |" for s in sweep]
    lines.append("<!-- bench:style:end -->")
    return "\n".join(lines)


def train_all(presets: Sequence[str], images: int, out_root: Path, seed: int, device: str, jobs: int) -> list[dict]:
    """Each preset trained in its own process for ``images`` real images, ``jobs`` of them at a time."""
    from concurrent.futures import ThreadPoolExecutor

    stamp = time.strftime("%Y%m%d-%H%M%S")

    def one(preset: str) -> dict:
        steps = steps_for_images(preset, images)
        out = out_root / f"{preset}-{stamp}"
        print(f"training {preset} for {steps:,} steps ({images:,} images) -> {out}", file=sys.stderr, flush=True)
        return run_preset(preset, out, None, seed, ["--steps", str(steps), "--device", device])

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # the work is in child processes
        return list(pool.map(one, presets))


def main(images: Optional[int] = None, presets: Sequence[str] = PRESETS, psis: Sequence[float] = PSIS,
         n: int = 10_000, seed: int = 0, out_root: Path = Path("runs/bench-style"), write: Optional[Path] = None,
         device: str = "cpu", command: str = "ganforge bench style", jobs: int = 1) -> tuple[list[dict], list[dict]]:
    from ganforge import viz
    from ganforge.config import load_config

    if images is None:  # the StyleGAN preset's own budget
        cfg = load_config("stylegan-mnist")
        images = cfg.train.steps * cfg.train.batch_size
    rows = train_all(presets, images, Path(out_root), seed, device, jobs)
    for r in rows:
        r.update(scores(r["run"], n, seed))
        print(f"{r['preset']}: fid={r['fid']:.2f} precision={r['precision']:.3f} recall={r['recall']:.3f} "
              f"classes={r['classes']}", file=sys.stderr, flush=True)
    style_runs = [r for r in rows if r["preset"].startswith("stylegan")]
    sweep = truncation_sweep(Path(style_runs[0]["run"]), psis, n, seed) if style_runs and psis else []
    picture = Path(out_root) / f"style-side-by-side-{time.strftime('%Y%m%d-%H%M%S')}.png"
    viz.save_side_by_side([final_grid(Path(r["run"])) for r in rows], [r["preset"] for r in rows], picture)
    if write is not None:
        write = Path(write)
        dest = write.parent / "images" / "style-vs-dcgan.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(picture.read_bytes())
        write_block(write, "style", render_block(rows, sweep, images, dest, write,
                                                 machine_info(torch.device("cpu")), command, n))
    return rows, sweep
