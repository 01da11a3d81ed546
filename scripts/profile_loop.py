"""Where a whole training run's time goes: cProfile over ``ganforge train`` of a preset (default dcgan-mnist).

Prints the share of the wall time spent in the step (``engine.run_step``) and in what the loop does around it
(data hand-off, EMA, the stats window, metrics lines, sample grids, checkpoints, pictures), so that work outside
the step shows up for what it costs. On a GPU, time in ``run_step`` is mostly the host launching kernels (CUDA
runs asynchronously); the loop drains the device only where it reads values back (a metrics line, a checkpoint).

    python scripts/profile_loop.py --steps 200 --device cpu
    python scripts/profile_loop.py --steps 400 --device cuda --set train.cuda_graph=true --set train.precision=bf16
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shutil
import time
from pathlib import Path

from ganforge.config import load_config
from ganforge.train import train

# (file, function, what it is): the loop's parts, outermost first
PARTS = [
    ("loop.py", "_steps_to_epoch_end", "steps, with everything per step"),
    ("loop.py", "_train_step", "the step plus EMA and the stats window"),
    ("engine.py", "run_step", "the step (eager)"),
    ("graphs.py", "__call__", "the step (train.cuda_graph)"),
    ("ema.py", "update", "EMA of G"),
    ("parts.py", "add", "stats window (device sums)"),
    ("batches.py", "epoch", "data: the next batch"),
    ("loop.py", "_log_window", "metrics lines and guards (reads the device)"),
    ("loop.py", "draw_fixed", "sample grids and their watches"),
    ("loop.py", "save", "checkpoints"),
    ("loop.py", "_finish", "pictures at the end"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="dcgan-mnist")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="/tmp/ganforge-profile")
    ap.add_argument("--json", default=None, help="also write the shares here")
    ap.add_argument("--set", action="append", default=[], dest="sets")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    cfg = load_config(args.preset, [f"train.steps={args.steps}", f"train.device={args.device}", "eval.final=false",
                                    *args.sets])
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    train(cfg, out, progress=False, log=lambda s: None)
    prof.disable()
    total = time.perf_counter() - t0
    stats = {(Path(f).name, name): ct for (f, _, name), (_, _, _, ct, _) in pstats.Stats(prof).stats.items()}
    shares = {f"{file}:{name}": round(stats.get((file, name), 0.0), 3) for file, name, _ in PARTS}
    print(f"{args.preset}, {args.steps} steps on {args.device} {' '.join(args.sets)}: {total:.1f} s in train()")
    for (file, name, what), sec in zip(PARTS, shares.values()):
        print(f"  {what:45s} {sec:8.2f} s  {100 * sec / total:5.1f}%")
    metrics = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    img_s = [r["img_s"] for r in metrics if "img_s" in r]
    print(f"  img_s in metrics.jsonl: {img_s}")
    if args.json:
        Path(args.json).write_text(json.dumps({"total_s": total, "seconds": shares, "img_s": img_s,
                                               "args": vars(args)}, indent=1))


if __name__ == "__main__":
    main()
