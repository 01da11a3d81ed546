"""``ganforge bench quality --ablation``: the experiments that chose the default ``dcgan-mnist`` recipe.

Each row is a preset (the old default, ``dcgan-mnist-v1``, that the search started from) with some keys changed
(``--set``), trained for its step budget in its own process on one thread (``train.threads=1``), so that rows can run side by side (``--jobs``) without changing one
another's results; the cost is the process's CPU time, which parallel runs barely change. Every run is scored
the same way: in-domain FID / precision / recall (``mnist-cnn`` features) and class coverage on 5,000 samples
of its final generator against the 5,000 embedded digits.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Sequence

from ganforge.bench.markdown import machine_info, write_block
from ganforge.errors import UserError

Variant = tuple[str, str, str, list[str]]  # (row name, what it changes, preset, --set overrides)

SMALL = ["model.g_width=32", "model.d_width=32"]
BASE = [*SMALL, "train.batch_size=32", "train.steps=3500"]  # round 1's base: 32-wide nets, batch 32

# Round 1, from the old default (dcgan-mnist-v1): the networks' size and batch at ~250 CPU-s, then one change
# at a time on the small, batch-32 base.
VARIANTS: list[Variant] = [
    ("v1", "the old default, 1,400 steps", "dcgan-mnist-v1", []),
    ("v1-short", "the old default cut to the budget", "dcgan-mnist-v1", ["train.steps=500"]),
    ("w32-b64", "32-wide G and D", "dcgan-mnist-v1", [*SMALL, "train.steps=1500"]),
    ("w32-b32", "32-wide, batch 32 (round 1's base)", "dcgan-mnist-v1", BASE),
    ("ema995", "base + EMA decay 0.995", "dcgan-mnist-v1", [*BASE, "train.ema.decay=0.995"]),
    ("lr4e-4", "base + learning rates 4e-4", "dcgan-mnist-v1", [*BASE, "train.lr_g=4e-4", "train.lr_d=4e-4"]),
    ("lr-decay", "base + linear lr decay over the second half", "dcgan-mnist-v1",
     [*BASE, "train.lr_decay=linear", "train.lr_decay_start=0.5"]),
    ("diffaug", "base + DiffAugment translation", "dcgan-mnist-v1", [*BASE, "train.diffaugment=translation"]),
    ("bias", "base + conv biases (G's output can reach -1 by its bias)", "dcgan-mnist-v1", [*BASE, "model.bias=true"]),
    ("no-smooth", "base without label smoothing", "dcgan-mnist-v1", [*BASE, "train.real_label=1.0"]),
]

# Round 2: round 1's two gains together (lr 4e-4, EMA 0.995), then the learning rate, batch and widths around them.
WINNERS = [*BASE, "train.lr_g=4e-4", "train.lr_d=4e-4", "train.ema.decay=0.995"]
VARIANTS += [
    ("lr4e-4+ema995", "round 1's gains together", "dcgan-mnist-v1", WINNERS),
    ("lr6e-4", "... with learning rates 6e-4", "dcgan-mnist-v1", [*WINNERS, "train.lr_g=6e-4", "train.lr_d=6e-4"]),
    ("b16", "... with batch 16 for 6,000 steps", "dcgan-mnist-v1",
     [*WINNERS, "train.batch_size=16", "train.steps=6000"]),
    ("g48", "... with a 48-wide G, 3,000 steps", "dcgan-mnist-v1", [*WINNERS, "model.g_width=48", "train.steps=3000"]),
    ("4000-steps", "... for 4,000 steps", "dcgan-mnist-v1", [*WINNERS, "train.steps=4000"]),
]


def train_variant(name: str, overrides: Sequence[str], out: Path, seed: int, preset: str = "dcgan-mnist",
                  steps: Optional[int] = None, extra_args: Sequence[str] = ()) -> dict:
    """Train one variant on one thread; returns its steps, CPU and wall seconds and peak memory.

    ``extra_args``: more ``ganforge train`` flags (e.g. ``--init-from RUN``)."""
    sets = [a for o in [*overrides, "train.threads=1"] for a in ("--set", o)]
    budget = [] if steps is None else ["--steps", str(steps)]
    cmd = [sys.executable, "-m", "ganforge", "train", preset, "--out", str(out), "--seed", str(seed), "--quiet",
           "--device", "cpu", *budget, *extra_args, *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a chatty child can never fill it and stall
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        log.seek(0)
        err = log.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise UserError(f"variant {name} failed: {err.strip().splitlines()[-1] if err.strip() else status}")
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return {"variant": name, "run": str(out), "steps": last["step"], "wall_s": round(time.perf_counter() - t0, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "command": shlex.join(["ganforge", *cmd[3:]])}


def train_or_reuse(name: str, preset: str, sets: Sequence[str], out: Path, seed: int, steps: Optional[int] = None,
                   log: Callable[[str], None] = print) -> dict:
    """``train_variant``, unless ``out`` holds a run finished with the same preset, overrides, seed and steps (its
    row is kept in ``bench_row.json``): a rerun of a bench then only rescores, and never scores another seed's run."""
    done = Path(out) / "bench_row.json"
    settings = {"sets": list(sets), "preset": preset, "seed": seed, "steps_asked": steps}
    if done.exists():
        kept = json.loads(done.read_text())
        differ = [k for k, v in settings.items() if kept.get(k) != v]
        if not differ:
            log(f"{name}: finished before, reused")
            return kept
        raise UserError(f"{out} holds a {name} run trained with other settings ({', '.join(differ)}): "
                        "pass another --out, or delete that folder to retrain")
    row = {**train_variant(name, sets, out, seed, preset, steps=steps), **settings}
    done.write_text(json.dumps(row))
    log(f"{name}: {row['steps']} steps, {row['cpu_s']} CPU s")
    return row


def score(row: dict, seed: int, n: int = 5000) -> dict:
    from ganforge.apps.evaluate import evaluate

    m = evaluate(row["run"], "mnist-embedded", ["fid", "prc", "coverage"], n=n, seed=seed, log=lambda s: None)
    m = m["metrics"]
    row.update(fid=m["fid[mnist-cnn]"], precision=m["precision[mnist-cnn]"], recall=m["recall[mnist-cnn]"],
               classes=int(m["classes_covered"]), class_kl=m["class_kl"], n_eval=n)
    return row


def run(variants: Sequence[Variant] = VARIANTS, out_root: Path = Path("runs/bench-recipe"),
        seed: int = 0, jobs: int = 2, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> list[dict]:
    stamp = time.strftime("%Y%m%d-%H%M%S")

    def one(v: Variant) -> dict:
        name, what, preset, sets = v
        row = train_variant(name, sets, Path(out_root) / f"{name}-{stamp}", seed, preset)
        row.update(what=what, sets=sets, preset=preset)
        log(f"recipe: {name}: {row['steps']} steps, {row['cpu_s']} CPU s")
        return row

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = list(pool.map(one, variants))
    for row in rows:  # scored one at a time, after training, so scoring never competes with a timed run
        score(row, seed)
        log(f"recipe: {row['variant']}: fid {row['fid']:.1f}, {row['classes']}/10 classes")
    return rows


def render(rows: Sequence[dict], info: dict, date: str, jobs: int) -> str:
    only = "" if len(rows) == len(VARIANTS) else f" --only {','.join(r['variant'] for r in rows)}"
    lines = [
        "<!-- bench:recipe:start -->",
        f"`ganforge bench quality --ablation --jobs {jobs}{only}`: {date}, {info['cpu']}, each run on one thread, "
        f"{jobs} at a time; metrics on 5,000 samples of the final generator against the 5,000 embedded digits "
        "(`mnist-cnn` features).",
        "",
        "| variant | what changes | steps | CPU s (1 thread) | peak RSS (MB) | fid[mnist-cnn] | precision | recall | "
        "classes | class KL |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        sets = " ".join(f"`{s}`" for s in r["sets"])
        lines.append(f"| {r['variant']} | {r['what']}: `{r['preset']}` {sets} | {r['steps']:,} | {r['cpu_s']:.0f} | "
                     f"{r['peak_rss_mb']} | {r['fid']:.1f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['classes']} / 10 | {r['class_kl']:.3f} |")
    lines.append("<!-- bench:recipe:end -->")
    return "\n".join(lines)


def main(out_root: Path = Path("runs/bench-recipe"), write: Optional[Path] = None, seed: int = 0,
         jobs: int = 2, only: Optional[Sequence[str]] = None) -> list[dict]:
    import datetime as _dt

    import torch

    info = machine_info(torch.device("cpu"))
    variants = [v for v in VARIANTS if only is None or v[0] in only]
    rows = run(variants, out_root=out_root, seed=seed, jobs=jobs)
    block = render(rows, info, _dt.date.today().isoformat(), jobs)
    print(block)
    if write is not None:
        write_block(Path(write), "recipe", block)
    return rows
