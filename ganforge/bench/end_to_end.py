"""``ganforge bench throughput --e2e``: whole training runs, start-up included, ganforge against the reference script.

Both train the PyTorch tutorial's 64x64 DCGAN (ngf = ndf = 64, batch 64) for the same number of steps on the
same folder of images, each in a fresh process timed from spawn to exit, so imports, data decoding, pictures
and checkpoints all count. The reference is pytorch/examples' ``dcgan/main.py`` algorithm and data pipeline,
rewritten in ``reference_dcgan``; ganforge runs ``ganforge train dcgan-celeba --data folder:DIR`` with that
preset's own defaults but for the final evaluation, which is off (the reference script scores nothing; on a
folder it would fit an ``ssl-conv`` encoder, minutes of CPU). Runs alternate (reference, ganforge, ganforge, reference, ...) so that a slow spell of
the machine lands on both; the median wall time per trainer is reported. Images/s = real images consumed /
wall time.

The default folder is the 5,000 embedded digits written as 28x28 PNGs in one sub-folder per class (the layout
``ImageFolder`` needs), so the default run needs no download; ``78`` steps of batch 64 is one epoch of them.
"""
from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from ganforge.errors import UserError

DEFAULT_STEPS = 78  # one epoch of the 5,000 digits in full batches of 64
BATCH = 64


def export_digits(dest: Path) -> Path:
    """The embedded digits as ``dest/<label>/<index>.png`` (written once; a marker file says it is complete)."""
    dest = Path(dest)
    done = dest / ".complete"
    if done.is_file():
        return dest
    from PIL import Image

    from ganforge.data.embedded import load_raw

    images, labels = load_raw()
    for i, (img, label) in enumerate(zip(images, labels)):
        folder = dest / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(folder / f"{i:05d}.png")
    done.write_text(f"{len(images)} digits\n")
    return dest


def reference_command(folder: Path, out: Path, steps: int, seed: int) -> list[str]:
    return [sys.executable, "-m", "ganforge.bench.reference_dcgan", "--dataroot", str(folder), "--outf", str(out),
            "--niter", "1000", "--steps", str(steps), "--manualSeed", str(seed)]


def ganforge_command(folder: Path, out: Path, steps: int, seed: int, extra: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "ganforge", "train", "dcgan-celeba", "--data", f"folder:{folder}", "--batch-size",
            str(BATCH), "--steps", str(steps), "--seed", str(seed), "--out", str(out), "--quiet",
            "--set", "eval.final=false", *extra]  # the reference scores nothing: scoring would only add its minutes


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds from spawn to exit, peak RSS in MB) of ``cmd``; a failure is a UserError with its last line."""
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a chatty child can never fill it and stall
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        log.seek(0)
        err = log.read()
    if os.waitstatus_to_exitcode(status) != 0:
        last = err.strip().splitlines()[-1] if err.strip() else f"exit status {status}"
        raise UserError(f"{shlex.join(cmd[1:4])} failed: {last}")
    return wall, usage.ru_maxrss / 1024


def run(folder: Optional[Path], steps: int = DEFAULT_STEPS, repeats: int = 2, seed: int = 0,
        out_root: Path = Path("runs/bench-e2e"), extra: Sequence[str] = (), bf16: bool = False,
        log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict:
    """Time ``repeats`` runs of each trainer, alternating; returns walls, img/s and the ratio."""
    out_root = Path(out_root)
    folder = Path(folder) if folder is not None else export_digits(out_root / "digits")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    makers = {"reference": lambda o: reference_command(folder, o, steps, seed),
              "ganforge": lambda o: ganforge_command(folder, o, steps, seed, extra)}
    if bf16:  # mixed precision on CPU: a speed-up only where the CPU has bf16 units (AMX, AVX512-BF16)
        makers["ganforge-bf16"] = lambda o: ganforge_command(folder, o, steps, seed,
                                                             [*extra, "--set", "train.precision=bf16"])
    walls: dict[str, list[float]] = {k: [] for k in makers}
    rss: dict[str, float] = {k: 0.0 for k in makers}
    for r in range(repeats):
        order = list(makers) if r % 2 == 0 else list(makers)[::-1]
        for name in order:
            wall, peak = timed(makers[name](out_root / f"{name}-{stamp}-{r}"))
            walls[name].append(wall)
            rss[name] = max(rss[name], peak)
            log(f"e2e: {name} run {r + 1}/{repeats}: {wall:.1f} s ({steps * BATCH / wall:.1f} img/s)")
    median = {k: statistics.median(v) for k, v in walls.items()}
    return {"folder": str(folder), "steps": steps, "batch": BATCH, "repeats": repeats, "walls": walls,
            "median_s": median, "img_s": {k: steps * BATCH / v for k, v in median.items()}, "peak_rss_mb": rss,
            "ratio": median["reference"] / median["ganforge"],
            "ratios": {k: median["reference"] / v for k, v in median.items()},
            "commands": {k: shlex.join(["python", *m(out_root / f"{k}-RUN")[1:]]) for k, m in makers.items()}}


def render(res: dict, info: dict, date: str) -> str:
    lines = [
        "<!-- bench:throughput-e2e:start -->",
        f"`ganforge bench throughput --e2e --e2e-steps {res['steps']} --repeats {res['repeats']}`  ",
        f"{date}; {info['cpu']}, {info['logical_cores']} logical cores, torch {info['torch']}; load average "
        f"{info.get('load_avg')} at start  ",
        f"DCGAN 64x64, ngf=ndf=64, batch {res['batch']}, {res['steps']} steps on the {res['folder']!s} folder; "
        f"each run a fresh process timed from spawn to exit (imports, decoding, pictures, checkpoints included); "
        f"{res['repeats']} runs per trainer, alternating; median.",
        "",
        "| trainer | wall (s), each run | median (s) | img/s | peak RSS (MB) |",
        "|---|---|---:|---:|---:|",
    ]
    names = {"reference": "pytorch/examples `dcgan/main.py` algorithm (`ganforge.bench.reference_dcgan`)",
             "ganforge": "`ganforge train dcgan-celeba --data folder:DIR` (fp32, the preset's precision)",
             "ganforge-bf16": "the same with `--set train.precision=bf16`"}
    for k in res["walls"]:
        walls = ", ".join(f"{w:.1f}" for w in res["walls"][k])
        lines.append(f"| {names[k]} | {walls} | {res['median_s'][k]:.1f} | {res['img_s'][k]:.1f} | "
                     f"{res['peak_rss_mb'][k]:.0f} |")
    lines += ["", f"- ganforge end to end: **{res['ratio']:.2f}x** the reference's images per second (fp32, the "
              "same arithmetic)"]
    if "ganforge-bf16" in res["ratios"]:
        lines.append(f"- with bf16 autocast: {res['ratios']['ganforge-bf16']:.2f}x")
    lines += ["", "Commands:", "", "```", *res["commands"].values(), "```", "<!-- bench:throughput-e2e:end -->"]
    return "\n".join(lines)
