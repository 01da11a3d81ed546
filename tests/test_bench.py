"""Tests for ganforge.bench.throughput: the reference step is the same algorithm as ganforge's fresh-z step, the
benchmark returns sane rows, and ``--write`` replaces its marked block idempotently."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from ganforge.bench import throughput as tp
from ganforge.config import model_config, TrainConfig
from ganforge.families import build_models

CPU = torch.device("cpu")


def _tiny(size: int = 16, width: int = 8, batch: int = 16):
    mc = model_config(family="dcgan", image_size=size, channels=3, g_width=width, d_width=width)
    torch.manual_seed(0)
    G, D = build_models(mc)
    real = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return mc, G, D, real


def _plain_adam(params, lr, tc, device):
    return torch.optim.Adam(params, lr=lr, betas=(tc.beta1, tc.beta2))


def _params(*modules):
    return [p.detach().clone() for m in modules for p in m.parameters()]


def _pair(mc, G, D, real, *, channels_last: bool, make_optimizer=tp.make_optimizer):
    ref = tp.ReferenceTrainer(copy.deepcopy(G), copy.deepcopy(D), real, mc.z_dim, CPU)
    tc = TrainConfig(batch_size=real.shape[0], reuse_fake=False, channels_last=channels_last, steps=1)
    parts = tp.make_parts(copy.deepcopy(G), copy.deepcopy(D), mc, tc, CPU, make_optimizer=make_optimizer)
    return ref, parts, tp.GanforgeTrainer(parts, real)


def test_reference_is_the_fresh_z_algorithm_bit_for_bit():
    """Same weights, same seed, plain Adam, NCHW: the textbook step and the GAN family's step (reuse_fake=False) agree exactly."""
    mc, G, D, real = _tiny()
    ref, parts, gf = _pair(mc, G, D, real, channels_last=False, make_optimizer=_plain_adam)
    before = _params(G, D)
    for s in range(2):
        torch.manual_seed(s)
        ld, lg = ref.step()
        torch.manual_seed(s)
        stats = gf.step()
        assert math.isfinite(ld) and math.isfinite(lg)
        assert (ld, lg) == (stats[0].item(), stats[1].item())
    for a, b, p0 in zip(_params(ref.G, ref.D), _params(parts.G, parts.D), before):
        assert torch.equal(a, b)
    # both G and D moved
    n_g = sum(1 for _ in G.parameters())
    assert all(not torch.equal(a, p0) for a, p0 in zip(_params(ref.G)[:n_g], before[:n_g]) if a.numel() > 1)
    assert all(not torch.equal(a, p0) for a, p0 in zip(_params(ref.D), before[n_g:]) if a.numel() > 1)


@pytest.mark.parametrize("channels_last", [False, True])
def test_trainer_parts_match_reference_closely(channels_last):
    """With the trainer's own optimizer and memory format the numbers agree up to float rounding."""
    mc, G, D, real = _tiny()
    ref, parts, gf = _pair(mc, G, D, real, channels_last=channels_last)
    assert parts.memory_format == (torch.channels_last if channels_last else torch.contiguous_format)
    before = _params(G, D)
    torch.manual_seed(3)
    ld, lg = ref.step()
    torch.manual_seed(3)
    stats = gf.step()
    assert torch.isfinite(stats).all()
    assert stats[0].item() == pytest.approx(ld, rel=1e-5)
    assert stats[1].item() == pytest.approx(lg, rel=1e-5)
    after = _params(parts.G, parts.D)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))
    for a, b in zip(after, _params(ref.G, ref.D)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_main_returns_positive_rows(capsys):
    rows = tp.main(steps=2, device="cpu", sizes=[16], repeats=1, width=4, batch=8, log=lambda s: None)
    variants = [(r["variant"], r["channels_last"], r["deterministic"]) for r in rows]
    assert variants == [("reference", False, None), ("fresh_z", False, True), ("fresh_z", True, True),
                        ("reuse_fake", False, True), ("reuse_fake", True, True), ("fresh_z", True, False),
                        ("fast", True, True)]
    for r in rows:
        assert r["img_s"] > 0 and r["speedup"] > 0 and len(r["img_s_all"]) == 1
    assert rows[0]["speedup"] == pytest.approx(1.0)
    assert sum(1 for r in rows if tp._is_headline(r)) == 1
    out = capsys.readouterr().out
    assert tp.MARK_START in out and "| reference (textbook) |" in out and "logical cores" in out
    assert "| deterministic |" in out and "autotuned (deterministic=false)" in out
    assert "with train.deterministic=false (exactness costs" in out


def test_write_replaces_block_idempotently(tmp_path):
    doc = tmp_path / "BENCH.md"
    doc.write_text("# Benchmarks\n\nintro text\n\n" + tp.MARK_START + "\nold table\n" + tp.MARK_END + "\n\nafter\n")
    for _ in range(2):
        tp.main(steps=2, device="cpu", sizes=[16], repeats=1, width=4, batch=8, write=doc, log=lambda s: None)
    text = doc.read_text()
    assert text.count(tp.MARK_START) == 1 and text.count(tp.MARK_END) == 1
    assert text.startswith("# Benchmarks\n\nintro text\n\n" + tp.MARK_START)
    assert text.endswith(tp.MARK_END + "\n\nafter\n")
    assert "old table" not in text and "| reference (textbook) |" in text
    assert "main(steps=2, device='cpu', sizes=[16]" in text  # the command that made it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BENCH.md"]  # no temp files left


def test_write_creates_file_and_block(tmp_path):
    doc = tmp_path / "new" / "BENCH.md"
    block = tp.MARK_START + "\nx\n" + tp.MARK_END
    tp.write_block(doc, "throughput", block)
    tp.write_block(doc, "throughput", block)
    assert doc.read_text() == block + "\n"
    plain = tmp_path / "plain.md"
    plain.write_text("text")
    tp.write_block(plain, "throughput", block)
    tp.write_block(plain, "throughput", block.replace("x", "y"))
    assert plain.read_text() == "text\n\n" + block.replace("x", "y") + "\n"


def test_bench_style_shows_every_preset_the_same_number_of_real_images():
    from ganforge.bench.style import render_block, steps_for_images
    from ganforge.config import load_config
    from ganforge.families.progan import GrowthSchedule

    assert steps_for_images("dcgan-mnist-v1", 128_000) == 2000  # batch 64
    assert steps_for_images("dcgan-mnist", 128_000) == 4000 and steps_for_images("stylegan-mnist", 128_001) == 4001
    steps = steps_for_images("progan-mnist", 128_000)  # batch 64 below 32x32, 32 at 32x32: counted as used
    schedule = GrowthSchedule.of(load_config("progan-mnist"))
    assert schedule.images_at_step(steps) >= 128_000 > schedule.images_at_step(steps - 1)
    row = {"preset": "p", "steps": 10, "wall_s": 1.0, "fid": 1.0, "kid": 0.1, "precision": 0.5, "recall": 0.5,
           "density": 1.0, "coverage": 0.5, "classes": 10, "class_kl": 0.01}
    from pathlib import Path

    block = render_block([row], [{"psi": 0.5, **row}], 640, Path("docs/images/x.png"), Path("docs/B.md"),
                         {"cpu": "cpu", "logical_cores": 2, "torch": "t"}, "ganforge bench style")
    assert block.startswith("<!-- bench:style:start -->") and "| 0.5 | 1.00 | 0.500 |" in block


def test_recipe_variants_are_valid_configs_and_render():
    from ganforge.bench import recipe
    from ganforge.config import load_config

    names = [v[0] for v in recipe.VARIANTS]
    assert len(set(names)) == len(names)
    for name, _, preset, sets in recipe.VARIANTS:  # a typo in a key would otherwise surface an hour into the bench
        cfg = load_config(preset, sets)
        assert cfg.train.steps and cfg.train.steps * cfg.train.batch_size <= 200_000, name
    rows = [{"variant": "v1", "what": "w", "preset": "dcgan-mnist-v1", "sets": ["train.steps=5"], "steps": 5,
             "cpu_s": 1.0, "peak_rss_mb": 900, "fid": 1.5, "precision": 0.5, "recall": 0.4, "classes": 10,
             "class_kl": 0.01}]
    block = recipe.render(rows, {"cpu": "cpu"}, "today", 2)
    assert "--only v1" in block and "| v1 | w: `dcgan-mnist-v1` `train.steps=5` | 5 |" in block


def test_fast_path_row_says_it_stayed_eager_on_the_cpu(capsys):
    """The fast path's row runs on a CPU too, its label naming why it is no CUDA graph; two batches, two tables'
    worth of rows, each batch against its own reference."""
    rows = tp.main(steps=2, device="cpu", sizes=[16], repeats=1, width=4, batches=[4, 8], log=lambda s: None)
    fast = [r for r in rows if r["variant"] == "fast"]
    assert [r["batch"] for r in fast] == [4, 8] and all(r["img_s"] > 0 for r in fast)
    assert all("eager: CUDA graphs need a CUDA device (this run is on cpu)" in r["label"] for r in fast)
    assert [r["speedup"] for r in rows if r["variant"] == "reference"] == [1.0, 1.0]
    out = capsys.readouterr().out
    assert "| ganforge fast path (fp32, fused Adam, eager: CUDA graphs need a CUDA device" in out
    assert "16x16 batch 8: ganforge" in out and "batches=[4, 8]" in out
    assert tp.block_name(CPU) == "throughput" and tp.block_name(torch.device("cuda")) == "throughput-gpu"
