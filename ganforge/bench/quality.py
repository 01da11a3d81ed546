"""``ganforge bench quality``: the default recipe against the seeds' plain DCGAN loop at the same CPU budget.

Each preset trains in its own process under the same wall-clock limit (``train.time_limit``), so the comparison
is fair on any machine; the final grids of the same fixed latent vectors go side by side into one picture, and
the table (steps reached, images seen, peak memory of the process) into ``docs/BENCHMARKS.md``.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from ganforge.bench.markdown import machine_info, write_block
from ganforge.errors import UserError

DEFAULT_PRESETS = ("dcgan-mnist-textbook", "dcgan-mnist-v1", "dcgan-mnist")  # baseline, older default, the recipe
# the default (dcgan-mnist-rpgan) keeps: its network and budget


def run_preset(preset: str, out: Path, seconds: Optional[float], seed: int, extra: Sequence[str] = ()) -> dict:
    """Train ``preset`` for ``seconds`` (None: its own step budget) in a child process; returns steps, time, RSS."""
    budget = [] if seconds is None else ["--steps", "100000000", "--set", f"train.time_limit={seconds}"]
    cmd = [sys.executable, "-m", "ganforge", "train", preset, "--out", str(out), "--seed", str(seed), "--quiet",
           *budget, *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise UserError(f"training {preset} failed: {stderr.strip().splitlines()[-1] if stderr.strip() else status}")
    import json

    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if l.strip()]
    last = records[-1]
    return {
        "preset": preset, "run": str(out), "steps": last["step"], "epochs": last["epoch"], "wall_s": round(wall, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 0),  # Linux reports KiB
        "command": shlex.join(["ganforge", *cmd[3:]]),
    }


def final_grid(run: Path) -> Path:
    grids = sorted((run / "samples").glob("e*-s*.png"))
    return grids[-1]


def render_block(rows: list[dict], picture: Path, doc: Path, seconds: Optional[float], info: dict) -> str:
    rel = os.path.relpath(picture, doc.parent)
    budget = (f"Same wall-clock budget for every preset: {seconds:.0f} s of training each (start-up and pictures "
              "come on top)" if seconds is not None else
              "Each preset's own step budget, so the comparison does not depend on machine load")
    lines = [
        "<!-- bench:quality:start -->",
        f"{budget}; one process at a time, on {info['cpu']} ({info['logical_cores']} logical cores, "
        f"torch {info['torch']}, {info['torch_threads']} threads), {time.strftime('%Y-%m-%d')}.",
        "",
        f"![left to right: {', '.join(r['preset'] for r in rows)}]({rel})",
        "",
        "| preset | steps in budget | wall (s, incl. start-up and pictures) | peak RSS (MB) | fid[mnist-cnn] | "
        "kid[mnist-cnn] | precision | recall | classes covered | class KL | evaluate time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| `{r['preset']}` | {r['steps']:,} | {r['wall_s']} | {r['peak_rss_mb']:.0f} | {r['fid']:.2f} | "
                     f"{r['kid']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['classes']} / 10 | "
                     f"{r['class_kl']:.3f} | {r['eval_s']} |")
    lines += ["", "Metrics: `ganforge evaluate RUN --ref mnist-embedded --n 10000` on the run's final generator "
              "(EMA when the recipe keeps one), in-domain extractor `mnist-cnn` (not comparable with Inception FID). "
              "Evaluate time is for 10,000 generated images plus the (cached) reference, 2 CPU cores."]
    lines += ["", "Commands:", "", "```"] + [r["command"] for r in rows] + ["```", "<!-- bench:quality:end -->"]
    return "\n".join(lines)


def main(seconds: Optional[float] = 300, out_root: Path = Path("runs/bench-quality"), write: Optional[Path] = None,
         presets: Sequence[str] = DEFAULT_PRESETS, seed: int = 0) -> list[dict]:
    out_root = Path(out_root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for preset in presets:
        out = out_root / f"{preset}-{stamp}"
        what = f"{seconds:.0f}s" if seconds is not None else "its step budget"
        print(f"training {preset} for {what} -> {out}", file=sys.stderr, flush=True)
        rows.append(run_preset(preset, out, seconds, seed))
    from ganforge import viz
    from ganforge.apps.evaluate import evaluate

    for r in rows:  # in-domain metrics on 10,000 samples against the 5,000 embedded digits
        res = evaluate(r["run"], "mnist-embedded", ["fid", "kid", "prc", "coverage"], n=10_000, seed=seed,
                       log=lambda s: None)
        m = res["metrics"]
        r.update(fid=m["fid[mnist-cnn]"], kid=m["kid[mnist-cnn]"], precision=m["precision[mnist-cnn]"],
                 recall=m["recall[mnist-cnn]"], classes=int(m["classes_covered"]), class_kl=m["class_kl"],
                 eval_s=res["seconds"])
    picture = out_root / f"side-by-side-{stamp}.png"
    viz.save_side_by_side([final_grid(Path(r["run"])) for r in rows], [r["preset"] for r in rows], picture)
    for r in rows:
        print(f"{r['preset']:24s} steps={r['steps']:>6} wall={r['wall_s']:>6}s peak_rss={r['peak_rss_mb']:.0f}MB "
              f"fid[mnist-cnn]={r['fid']:.2f} classes={r['classes']}/10 class_kl={r['class_kl']:.3f}")
    if write is not None:
        write = Path(write)
        pic_dest = write.parent / "images" / "default-vs-textbook.png"
        pic_dest.parent.mkdir(parents=True, exist_ok=True)
        pic_dest.write_bytes(picture.read_bytes())
        write_block(write, "quality", render_block(rows, pic_dest, write, seconds, machine_info(torch.device("cpu"))))
    return rows
