"""``ganforge bench semi``: does the semi-supervised GAN beat its own classifier trained on the labels alone?

For each seed: train ``ssgan-mnist`` (100 labels, the other 3,900 training digits unlabelled) and score its
discriminator on the 1,000 held-out test digits; then train the same discriminator architecture as a plain
classifier on the same 100 labelled digits only (cross-entropy, same optimizer, learning-rate schedule, batch size
and number of steps) and score it on the same test digits.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ganforge.bench.markdown import machine_info, write_block
from ganforge.config import RunConfig, load_config

PRESET = "ssgan-mnist"


def supervised_only(cfg: RunConfig) -> float:
    """Test accuracy of the discriminator architecture trained on the labelled digits alone."""
    from ganforge.data import build_dataset, build_spec
    from ganforge.families import build_networks
    from ganforge.families.ssgan import labeled_indices
    from ganforge.train.loop import make_optimizer, seed_everything
    from ganforge.train.schedule import apply_lr, lr_factor

    tc, mc = cfg.train, cfg.model
    data = build_dataset(cfg.data, mc, seed=tc.seed)
    idx = labeled_indices(data.labels, cfg.data.labeled, mc.num_classes, tc.seed)
    x, y = data.tensor[idx], data.labels[idx]
    seed_everything(tc.seed)
    D = build_networks(mc)["D"].train()
    opt = make_optimizer(D.parameters(), tc.lr_d, tc, torch.device("cpu"))
    for step in range(tc.steps):
        apply_lr(opt, lr_factor(step, tc.steps, tc.lr_decay, tc.lr_decay_start))
        gen = torch.Generator().manual_seed(tc.seed * 1_000_003 + step)
        pick = torch.randint(0, len(y), (tc.batch_size,), generator=gen)
        loss = F.cross_entropy(D.class_logits(x[pick]).float(), y[pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    test = build_spec(cfg.data.spec, channels=mc.channels, size=mc.image_size, split="test")
    D.eval()
    with torch.inference_mode():
        pred = torch.cat([D.class_logits(test.tensor[i:i + 500]).argmax(1) for i in range(0, len(test), 500)])
    return float((pred == test.labels).float().mean())


def run_seed(seed: int, out_root: Path, steps: Optional[int], device: Optional[str]) -> dict:
    from ganforge.apps.classify import held_out_accuracy
    from ganforge.train import train

    values: dict = {"train.seed": seed, **({"train.steps": steps} if steps else {}),
                    **({"train.device": device} if device else {})}
    cfg = load_config(PRESET, [], values)
    run = Path(out_root) / f"{PRESET}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    t0 = time.perf_counter()
    train(cfg, run)
    train_s = time.perf_counter() - t0
    ssgan, n_test = held_out_accuracy(run)
    t0 = time.perf_counter()
    alone = supervised_only(cfg)
    return {"seed": seed, "steps": cfg.train.steps, "labels": cfg.data.labeled, "ssgan": ssgan,
            "supervised": alone, "n_test": n_test, "train_s": train_s, "supervised_s": time.perf_counter() - t0,
            "run": str(run)}


def render_block(rows: list[dict], info: dict, command: str) -> str:
    head = "| seed | labels | steps | SSGAN test accuracy | same D, labels only | difference | SSGAN train (s) |"
    lines = ["<!-- bench:semi:start -->", f"`{command}`  ",
             f"{time.strftime('%Y-%m-%d')}; {info['cpu']}, {info['logical_cores']} cores, torch {info['torch']}. "
             f"Test: the {rows[0]['n_test']:,} held-out digits of `mnist-embedded` (split `test`), never trained on.",
             "", head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['labels']} | {r['steps']:,} | {100 * r['ssgan']:.1f}% | "
                     f"{100 * r['supervised']:.1f}% | {100 * (r['ssgan'] - r['supervised']):+.1f} points | "
                     f"{r['train_s']:.0f} |")
    ss, sup = np.mean([r["ssgan"] for r in rows]), np.mean([r["supervised"] for r in rows])
    lines.append(f"| **mean** | | | **{100 * ss:.1f}%** | **{100 * sup:.1f}%** | **{100 * (ss - sup):+.1f} points** | |")
    return "\n".join(lines + ["<!-- bench:semi:end -->"])


def main(seeds: Sequence[int] = (0, 1, 2), steps: Optional[int] = None, out_root: Path = Path("runs/bench-semi"),
         write: Optional[Path] = None, device: Optional[str] = None, command: str = "ganforge bench semi") -> list[dict]:
    rows = []
    for s in seeds:
        rows.append(run_seed(s, out_root, steps, device))
        r = rows[-1]
        print(f"seed {s}: ssgan {100 * r['ssgan']:.1f}%  labels only {100 * r['supervised']:.1f}%", flush=True)
        if write is not None:
            write_block(Path(write), "semi", render_block(rows, machine_info(torch.device("cpu")), command))
    return rows
