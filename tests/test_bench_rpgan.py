"""``ganforge bench rpgan`` (issue 36): each variant trains with exactly its loss and penalties, and the block keeps
the rows of earlier runs."""
from __future__ import annotations

import subprocess
import sys

import yaml

from ganforge.bench import rpgan


def _row(bench, variant, modes, steps):
    return {"bench": bench, "variant": variant, "steps": steps, "seed": 0, "cpu_s": 1.0, "modes": modes,
            "high_quality": 0.5, "kl": 0.5}


def test_rows_accumulate_across_runs_in_table_order():
    info = {"cpu": "cpu", "logical_cores": 2}
    first = rpgan.render_block([_row("grid25", "GAN", 20, 100), _row("ring8", "RpGAN", 7, 100)], info, "cmd one")
    second = rpgan.render_block([_row("ring8", "RpGAN + R1 + R2", 8, 300), _row("ring8", "RpGAN", 6, 300)], info,
                                "cmd two", previous=first)
    keys = [tuple(c.strip() for c in l.split("|")[1:3]) for l in second.splitlines()
            if l.startswith("| ") and l.split("|")[1].strip() in rpgan.STEPS]
    assert keys == [("ring8", "RpGAN"), ("ring8", "RpGAN + R1 + R2"), ("grid25", "GAN")]
    assert "| ring8 | RpGAN | `train.loss=rpgan` | 300 |" in second  # replaced by the rerun
    assert "cmd one" in second  # grid25's row kept


def test_a_variant_trains_with_its_loss_and_both_penalties(tmp_path):
    r = rpgan.run_variant("ring8", "RpGAN + R1 + R2", tmp_path, steps=20, seed=0, device="cpu")
    cfg = yaml.safe_load((tmp_path / next(p.name for p in tmp_path.iterdir()) / "config.yaml").read_text())
    assert (cfg["train"]["loss"], cfg["train"]["r1_gamma"], cfg["train"]["r2_gamma"]) == ("rpgan", rpgan.GAMMA,
                                                                                          rpgan.GAMMA)
    assert cfg["model"]["pack"] == 1 and r["steps"] == 20 and 0 <= r["modes"] <= 8 and r["cpu_s"] > 0


def test_an_unknown_variant_is_refused_in_one_line():
    res = subprocess.run([sys.executable, "-m", "ganforge", "bench", "rpgan", "--benches", "ring8", "--only",
                          "RpGAN,nope"], capture_output=True, text=True)
    assert res.returncode == 2 and "--only 'nope'" in res.stderr and "Traceback" not in res.stderr
