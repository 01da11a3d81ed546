"""``ganforge bench coverage``: targets are judged right, seeds are averaged, and the block is written."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ganforge.bench import coverage


def test_targets_follow_the_issue():
    assert coverage.target_met("ring8", 8, 0.9, 0.01)
    assert not coverage.target_met("ring8", 8, 0.89, 0.01)
    assert not coverage.target_met("grid25", 24, 0.99, 0.01)
    assert coverage.target_met("stacked-mnist", 990, None, 0.099)
    assert not coverage.target_met("stacked-mnist", 1000, None, 0.1)
    assert not coverage.target_met("stacked-mnist", 989, None, 0.01)


class _PerfectRing:
    """Samples exactly on the ring's centres, evenly: every mode, all high quality, KL ~ 0."""

    def sample(self, n, seed=0):
        from ganforge.data import mode_centers

        return mode_centers("ring8")[torch.arange(n) % 8]


class _OneMode:
    def sample(self, n, seed=0):
        from ganforge.data import mode_centers

        return mode_centers("grid25")[:1].repeat(n, 1)


def test_score_of_hand_made_generators():
    perfect = coverage.score("ring8", _PerfectRing(), seed=0)
    assert perfect["modes"] == 8 and perfect["high_quality"] == 1.0 and perfect["kl"] < 1e-4
    one = coverage.score("grid25", _OneMode(), seed=0)
    assert one["modes"] == 1 and one["kl"] == pytest.approx(np.log(25))


def test_rows_average_the_seeds_and_render(tmp_path):
    runs = [{"bench": "ring8", "preset": "ring8-mlp", "seed": s, "steps": 10, "train_s": 2.0, "run": "x",
             "modes": m, "high_quality": hq, "kl": kl} for s, m, hq, kl in ((0, 8, 0.95, 0.01), (1, 7, 0.85, 0.2))]
    row = coverage.summarize("ring8", runs)
    assert row["modes"] == 7.5 and row["high_quality"] == pytest.approx(0.9) and not row["met"]  # 7.5 < 8 modes
    info = {"cpu": "cpu", "logical_cores": 2, "torch": torch.__version__}
    block = coverage.render_block([row], None, info, "ganforge bench coverage --seeds 0,1")
    assert block.startswith("<!-- bench:coverage:start -->") and block.endswith("<!-- bench:coverage:end -->")
    assert "| ring8 | `ring8-mlp` | 10 | 0,1 |" in block and "7.5 / 8" in block and "**no**" in block
    assert "8, 95.0%, 0.010; 7, 85.0%, 0.200" in block


def test_a_short_benchmark_runs_end_to_end_and_writes_its_block(tmp_path):
    doc = tmp_path / "BENCH.md"
    doc.write_text("# B\n\nintro\n")
    rows = coverage.main(["ring8"], out_root=tmp_path / "runs", write=doc, seeds=[0, 1], steps=30,
                         device="cpu")
    assert len(rows) == 1 and rows[0]["seeds"] == [0, 1] and rows[0]["steps"] == 30
    assert all(0 <= r["modes"] <= 8 and 0 <= r["high_quality"] <= 1 for r in rows[0]["per_seed"])
    text = doc.read_text()
    assert text.startswith("# B\n\nintro\n") and text.count("<!-- bench:coverage:start -->") == 1
    coverage.main(["ring8"], out_root=tmp_path / "runs2", write=doc, seeds=[0], steps=10, device="cpu")
    text = doc.read_text()
    assert text.count("<!-- bench:coverage:start -->") == 1 and text.count("| ring8 |") == 1  # replaced
    assert "| ring8 | `ring8-mlp` | 10 | 0 |" in text


def test_rerunning_one_benchmark_keeps_the_other_rows():
    info = {"cpu": "cpu", "logical_cores": 2, "torch": torch.__version__}

    def row(bench, modes, steps):
        run = {"bench": bench, "preset": coverage.BENCHES[bench], "seed": 0, "steps": steps, "train_s": 1.0,
               "run": "x", "modes": modes, "high_quality": None if bench == "stacked-mnist" else 0.5, "kl": 0.5}
        return coverage.summarize(bench, [run])

    first = coverage.render_block([row("ring8", 8, 100), row("stacked-mnist", 12, 100)], None, info, "cmd one")
    second = coverage.render_block([row("grid25", 20, 200), row("ring8", 7, 300)], None, info, "cmd two",
                                   previous="# doc\n" + first + "\nmore\n")
    names = [l.split("|")[1].strip() for l in second.splitlines() if l.startswith("| ") and "`" in l]
    assert names == ["ring8", "grid25", "stacked-mnist"]  # the benchmarks' order, each once
    assert "| ring8 | `ring8-mlp` | 300 |" in second and "cmd two" in second
    assert "| stacked-mnist | `stacked-mnist-pacgan` | 100 |" in second and "cmd one" in second


def test_ablation_rows_accumulate_across_runs_in_table_order():
    from ganforge.bench import ablation

    info = {"cpu": "cpu", "logical_cores": 2, "torch": torch.__version__}

    def row(bench, variant, modes, command_steps):
        return {"bench": bench, "variant": variant, "what": ablation.variants(bench)[variant][0], "preset_recipe": False,
                "own": ablation.variants(bench)[variant][1], "steps": command_steps, "seed": 0, "train_s": 1.0,
                "modes": modes, "high_quality": None if bench == "stacked-mnist" else 0.5, "kl": 0.5}

    first = ablation.render_block([row("ring8", "LSGAN", 7, 100), row("stacked-mnist", "DCGAN", 99, 100)], info,
                                  "cmd one")
    second = ablation.render_block([row("grid25", "hinge", 20, 200), row("ring8", "LSGAN", 6, 300),
                                    row("ring8", "minimax", 1, 300)], info, "cmd two", previous=first)
    keys = [tuple(c.strip() for c in l.split("|")[1:3]) for l in second.splitlines() if l.startswith("| ")
            and l.split("|")[1].strip() in ablation.STEPS]
    assert keys == [("ring8", "minimax"), ("ring8", "LSGAN"), ("grid25", "hinge"), ("stacked-mnist", "DCGAN")]
    assert "| ring8 | LSGAN | least squares | `train.loss=lsgan` | 300 |" in second  # replaced by the rerun
    assert "| stacked-mnist | DCGAN |" in second and "cmd one" in second  # kept from the first run
    minimax = next(l for l in second.splitlines() if l.startswith("| ring8 | minimax"))
    assert "`train.loss=minimax`" in minimax and "`model.pack=1`" not in minimax  # the plain GAN's: said once


def test_bench_ablation_refuses_an_unknown_variant():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "ganforge", "bench", "ablation", "--benches", "ring8", "--only",
                          "LSGAN,nope"], capture_output=True, text=True)
    assert res.returncode == 2 and "--only 'nope'" in res.stderr and "Traceback" not in res.stderr
