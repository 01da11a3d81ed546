"""``ganforge bench translation``: the digit translation tasks, scored on test digits the models never saw.

- ``sr``, ``inpaint``, ``edges`` (pix2pix): for each, the preset, its L1-only ablation (``model.gan_weight=0``,
  the Pix2Pix paper's) and the trivial baseline (the input itself: the bicubic upscale, the masked digit, the
  edges), each scored on the 1,000 test pairs: L1, PSNR, the in-domain classifier's accuracy on the outputs (is
  the right digit there?) and FID[mnist-cnn] of the outputs against the true digits (L1 alone is blurrier).
- ``thin2thick`` (cyclegan): A -> B on the test digits: the classifier's agreement with the source labels, the
  ink of the inputs, the outputs and real domain-B digits (per image, the sum of its pixels on [0, 1]) with the
  ratio output / B and the fraction of the way from the input's ink to B's, the mean stroke thickness of the
  three, and the cycle reconstruction's L1.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from ganforge.bench.markdown import block_rows, machine_info, write_block

TASKS = {"sr": "pix2pix-sr-digits", "inpaint": "pix2pix-inpaint-digits", "edges": "pix2pix-edges-digits",
         "thin2thick": "cyclegan-thin2thick"}
BASELINE = {"sr": "bicubic upscale (the input)", "inpaint": "masked digit (the input)",
            "edges": "edges (the input)"}
HEADER = ("| task | model | train (s) | L1 | PSNR (dB) | classifier accuracy | FID[mnist-cnn] | "
          "machine, command |")
CYCLE_HEADER = ("| task | train (s) | class kept A->B | ink: input / output / real B | ink ratio output / B | "
                "way from input to B | stroke thickness: input / output / real B (px) | cycle L1 | "
                "machine, command |")


def _train(preset: str, overrides: list[str], out_root: Path, seed: int, steps: Optional[int],
           device: Optional[str], tag: str = "") -> tuple[Path, float]:
    from ganforge.config import load_config
    from ganforge.train import train

    values: dict = {"train.seed": seed, **({"train.steps": steps} if steps else {}),
                    **({"train.device": device} if device else {})}
    run = Path(out_root) / f"{preset}{tag}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    t0 = time.perf_counter()
    summary = train(load_config(preset, overrides, values), run)
    if summary.stopped:
        raise KeyboardInterrupt(f"{preset} stopped ({summary.stopped}) at step {summary.steps}")
    return run, time.perf_counter() - t0


def score_pix2pix(run: Optional[Path], cfg) -> dict:
    """Scores of a run's G (or, with ``run`` None, of the input itself) on the test pairs."""
    from ganforge.data.pairs import split_halves
    from ganforge.apps.translate import digit_scores, held_out_pairs, load_translator, pairs_tensor

    ds, _ = held_out_pairs(cfg)
    a, b = split_halves(pairs_tensor(ds))
    out = a if run is None else load_translator(run)(a)
    return digit_scores(out, b, ds.labels)


def score_cyclegan(run: Path) -> dict:
    """A -> B on the test digits: class kept, ink (``apps.translate.ink_scores``), stroke thickness, cycle L1."""
    from ganforge.data import digit_tasks
    from ganforge.apps.translate import (digit_scores, held_out_pairs, ink_scores, load_translator, pairs_tensor,
                                         to_uint8_nhwc)
    from ganforge.data.pairs import split_halves

    forward, backward = load_translator(run, "AtoB"), load_translator(run, "BtoA")
    ds, _ = held_out_pairs(forward.cfg)
    a, b = split_halves(pairs_tensor(ds))
    out = forward(a)
    kept = digit_scores(out, b, ds.labels)["accuracy"]

    def thick(x: torch.Tensor) -> float:
        return digit_tasks.stroke_thickness(to_uint8_nhwc(x)[..., 0])

    return {"kept": kept, "thick_in": thick(a), "thick_out": thick(out), "thick_b": thick(b),
            "cycle_l1": float(((backward(out) - a).abs() / 2).mean()), **ink_scores(a, out, b)}


def cyclegan_cells(s: dict) -> str:
    """The measured cells of a thin2thick row, from class kept to cycle L1."""
    return (f"{100 * s['kept']:.1f}% | {s['ink_input']:.1f} / {s['ink_output']:.1f} / {s['ink_target']:.1f} | "
            f"{100 * s['ink_ratio']:.1f}% | {100 * s['ink_way']:.1f}% | {s['thick_in']:.2f} / {s['thick_out']:.2f} / "
            f"{s['thick_b']:.2f} | {s['cycle_l1']:.4f}")


def _where(info: dict, command: str) -> str:
    return f"{time.strftime('%Y-%m-%d')}, {info['cpu']} ({info['logical_cores']} cores): `{command}`"


def pix2pix_rows(task: str, out_root: Path, seed: int, steps: Optional[int], device: Optional[str],
                 info: dict, command: str) -> list[str]:
    from ganforge.config import load_config

    preset = TASKS[task]
    rows = []
    base = score_pix2pix(None, load_config(preset, [], {}))
    variants = [("pix2pix (L1 + GAN)", []), ("L1 only", ["model.gan_weight=0"])]
    results = [(BASELINE[task], None, base)]
    for name, overrides in variants:
        run, seconds = _train(preset, overrides, out_root, seed, steps, device, "-l1" if overrides else "")
        results.append((name, seconds, score_pix2pix(run, load_config(preset, overrides, {}))))
    for name, seconds, s in results:
        rows.append(f"| {task} | {name} | {'' if seconds is None else f'{seconds:.0f}'} | {s['l1']:.4f} | "
                    f"{s['psnr']:.2f} | {100 * s['accuracy']:.1f}% | {s['fid_mnist_cnn']:.2f} | {_where(info, command)} |")
    return rows


def cyclegan_row(out_root: Path, seed: int, steps: Optional[int], device: Optional[str], info: dict,
                 command: str) -> str:
    run, seconds = _train(TASKS["thin2thick"], [], out_root, seed, steps, device)
    s = score_cyclegan(run)
    return f"| thin2thick | {seconds:.0f} | {cyclegan_cells(s)} | {_where(info, command)} |"


def _old_rows(markdown: str) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in block_rows(markdown, "translation"):
        task = line.split("|")[1].strip()
        if task in TASKS:
            rows.setdefault(task, []).append(line)
    return rows


def render_block(rows: dict[str, list[str]], previous: str = "") -> str:
    """The translation block: this run's rows per task, the other tasks' rows kept from ``previous``."""
    merged = {**_old_rows(previous), **rows}
    pix = [r for t in TASKS if t != "thin2thick" for r in merged.get(t, [])]
    cyc = merged.get("thin2thick", [])
    lines = ["<!-- bench:translation:start -->",
             "Test: the 1,000 held-out digits (split `test`), never trained on. L1 on [0, 1] pixels; accuracy of "
             "the shipped in-domain classifier on the outputs against the digits' labels; FID[mnist-cnn] of the "
             "outputs against the true digits. Each task's rows are written by the command in their last column.",
             "", HEADER, "|" + "---|" * HEADER.count(" | ") + "---|", *pix]
    if cyc:
        lines += ["", CYCLE_HEADER, "|" + "---|" * CYCLE_HEADER.count(" | ") + "---|", *cyc]
    return "\n".join(lines + ["<!-- bench:translation:end -->"])


def main(tasks: Sequence[str] = tuple(TASKS), seed: int = 0, steps: Optional[int] = None,
         out_root: Path = Path("runs/bench-translation"), write: Optional[Path] = None,
         device: Optional[str] = None, command: str = "ganforge bench translation") -> dict[str, list[str]]:
    info = machine_info(torch.device("cpu"))
    done: dict[str, list[str]] = {}
    for task in tasks:
        if task == "thin2thick":
            done[task] = [cyclegan_row(out_root, seed, steps, device, info, command)]
        else:
            done[task] = pix2pix_rows(task, out_root, seed, steps, device, info, command)
        print("\n".join(done[task]), flush=True)
        if write is not None:  # after every task: a stopped bench keeps what it measured
            previous = Path(write).read_text(encoding="utf-8") if Path(write).is_file() else ""
            write_block(Path(write), "translation", render_block({task: done[task]}, previous))
    return done

