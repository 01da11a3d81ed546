"""``ganforge bench rpgan``: does the relativistic loss matter? R3GAN's ablation (its table on Stacked MNIST:
RpGAN + R1 + R2 finds all 1,000 modes, GAN + R1 + R2 693) at a CPU budget.

The same network and budget with the classic non-saturating loss and with RpGAN, each bare and with both
zero-centred penalties, on the ring of 8 and the grid of 25 Gaussians (the 2-D presets' MLP GAN without their
recipe, as ``bench ablation``'s plain GAN) and, when asked, on Stacked MNIST (the DCGAN preset without PacGAN).
Scored as ``bench coverage`` does: modes covered, share of high-quality samples, KL. The time is the process's
CPU seconds (training and scoring), which on a shared machine mean more than wall time.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from ganforge.bench import coverage
from ganforge.bench.ablation import PLAIN_2D
from ganforge.bench.markdown import block_rows, machine_info, write_block

GAMMA = 0.1  # R1 and R2 weight (gamma/2 each), as the ablation's R1 row
VARIANTS: dict[str, list[str]] = {  # name -> overrides on top of the benchmark's plain GAN
    "GAN": [],
    "RpGAN": ["train.loss=rpgan"],
    "GAN + R1 + R2": [f"train.r1_gamma={GAMMA}", f"train.r2_gamma={GAMMA}"],
    "RpGAN + R1 + R2": ["train.loss=rpgan", f"train.r1_gamma={GAMMA}", f"train.r2_gamma={GAMMA}"],
}
PLAIN = {"ring8": PLAIN_2D, "grid25": PLAIN_2D, "stacked-mnist": ["model.pack=1", "train.lr_decay=none"]}
STEPS = {"ring8": 4000, "grid25": 4000, "stacked-mnist": 2000}
HEADER = ("| benchmark | variant | `--set` on top of the plain GAN | steps | seed | CPU s | modes covered | "
          "high-quality samples | KL | machine, command |")


def run_variant(bench: str, name: str, out_root: Path, steps: int, seed: int, device: Optional[str]) -> dict:
    """One training and its score; CPU seconds of this process for both."""
    tag = "-" + "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
    t0 = time.process_time()
    res = coverage.run_one(bench, out_root, None, seed, steps=steps, device=device,
                           overrides=[*PLAIN[bench], *VARIANTS[name]], tag=tag)
    return {**res, "variant": name, "cpu_s": time.process_time() - t0}


def render_row(r: dict, info: dict, command: str) -> str:
    hq = "" if r["high_quality"] is None else f"{100 * r['high_quality']:.1f}%"
    sets = " ".join(f"`{o}`" for o in VARIANTS[r["variant"]]) or "(none)"
    return (f"| {r['bench']} | {r['variant']} | {sets} | {r['steps']:,} | {r['seed']} | {r['cpu_s']:.0f} | "
            f"{r['modes']:g} / {coverage.TOTAL_MODES[r['bench']]} | {hq} | {r['kl']:.3f} | "
            f"{time.strftime('%Y-%m-%d')}, {info['cpu']} ({info['logical_cores']} cores): `{command}` |")


def render_block(rows: list[dict], info: dict, command: str, previous: str = "") -> str:
    """This run's rows, plus the rows of ``previous`` it did not rerun, in table order."""
    lines = {}
    for line in block_rows(previous, "rpgan", HEADER):
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 3 and cells[1] in STEPS and cells[2] in VARIANTS:
            lines[(cells[1], cells[2])] = line
    lines.update({(r["bench"], r["variant"]): render_row(r, info, command) for r in rows})
    order = [(b, v) for b in STEPS for v in VARIANTS]
    plain = "; ".join(f"{b}: " + (" ".join(f"`{o}`" for o in PLAIN[b]) or "(none)") for b in STEPS)
    return "\n".join(["<!-- bench:rpgan:start -->",
                      f"The plain GAN is each benchmark's preset with ({plain}); gamma = {GAMMA} for R1 and R2. "
                      "Each row is written by the command in its last column (one training); rerunning a variant "
                      "replaces its row only.", "", HEADER, "|" + "---|" * HEADER.count(" | ") + "---|",
                      *[lines[k] for k in order if k in lines], "<!-- bench:rpgan:end -->"])


def main(benches: Sequence[str] = ("ring8", "grid25"), steps: Optional[int] = None, seed: int = 0,
         out_root: Path = Path("runs/bench-rpgan"), write: Optional[Path] = None, device: Optional[str] = None,
         only: Sequence[str] = (), command: str = "ganforge bench rpgan") -> list[dict]:
    rows = []
    for bench in benches:
        for name in VARIANTS:
            if only and name not in only:
                continue
            r = run_variant(bench, name, out_root, steps or STEPS[bench], seed, device)
            hq = "" if r["high_quality"] is None else f" hq={100 * r['high_quality']:.1f}%"
            print(f"{bench:14s} {name:16s} modes={r['modes']:g}{hq} kl={r['kl']:.3f} ({r['cpu_s']:.0f} CPU s)",
                  flush=True)
            rows.append(r)
            if write is not None:  # after every row: a stopped bench keeps what it measured
                previous = Path(write).read_text(encoding="utf-8") if Path(write).is_file() else ""
                write_block(Path(write), "rpgan", render_block([r], machine_info(torch.device("cpu")), command,
                                                                previous))
    return rows
