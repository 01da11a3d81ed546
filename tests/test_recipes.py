"""Recipe knobs of the mode-coverage presets: the learning-rate schedule and the R1 penalty."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from ganforge.checkpoint import load_latest
from ganforge.train import train
from ganforge.train.schedule import apply_lr, lr_factor, remember_base_lr, scale_base_lr
from ganforge.families.parts.losses import r1_penalty

quiet = dict(progress=False, log=lambda s: None)


def test_linear_decay_holds_then_falls_towards_zero():
    f = [lr_factor(s, 10, "linear", 0.5) for s in range(10)]
    assert f[:5] == [1.0] * 5
    assert f[5:] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])


def test_cosine_decay_from_the_start():
    f = [lr_factor(s, 4, "cosine") for s in range(4)]
    assert f == pytest.approx([1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))])
    assert lr_factor(3, 4, "none") == 1.0


def test_rollback_scales_the_base_rate_that_the_schedule_applies():
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1e-3)
    remember_base_lr(opt)
    apply_lr(opt, 0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-4)
    scale_base_lr(opt, 0.5)  # a rollback
    apply_lr(opt, 0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(2.5e-4)


def test_a_group_without_a_saved_base_rate_takes_its_current_rate():
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1e-3)  # as loaded from an older checkpoint
    apply_lr(opt, 0.5)
    assert opt.param_groups[0]["initial_lr"] == 1e-3 and opt.param_groups[0]["lr"] == pytest.approx(5e-4)


def test_r1_penalty_of_a_linear_discriminator_is_its_squared_weight_norm():
    D = nn.Linear(6, 1)
    x = torch.randn(5, 6, requires_grad=True)
    penalty = r1_penalty(D(x).view(-1), x)
    assert penalty.item() == pytest.approx(D.weight.pow(2).sum().item(), rel=1e-6)
    penalty.backward()  # differentiable w.r.t. D's weights: d||w||^2/dw = 2w
    assert torch.allclose(D.weight.grad, 2 * D.weight.detach())


def test_the_schedule_reaches_the_logged_learning_rates(tmp_path, tiny):
    cfg = tiny("dcgan", steps=8, lr_decay="linear", lr_decay_start=0.5, lr_g=1e-3, lr_d=2e-3)
    train(cfg, tmp_path / "run", **quiet)
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # a line after step s shows the rate of update s-1 (0-based): the decay starts at update 4 of 8
    assert [r["lr_g"] for r in lines] == pytest.approx([1e-3, 1e-3, 1e-3 * 0.75, 1e-3 * 0.25])
    assert [r["lr_d"] for r in lines] == pytest.approx([2e-3, 2e-3, 2e-3 * 0.75, 2e-3 * 0.25])


@pytest.mark.parametrize("family", ["dcgan", "mlp"])
def test_resume_is_exact_with_a_schedule_and_r1(tmp_path, tiny, family, assert_same_run, resume_device):
    cfg = tiny(family, steps=10, lr_decay="cosine", lr_decay_start=0.2, r1_gamma=1.0, device=resume_device)
    train(cfg, tmp_path / "straight", **quiet)
    train(cfg, tmp_path / "resumed", stop_after_steps=5, **quiet)
    train(cfg, tmp_path / "resumed", resume=True, **quiet)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def test_r1_changes_the_discriminator_update(tmp_path, tiny):
    runs = {}
    for gamma in (0.0, 10.0):
        run = tmp_path / f"r1-{gamma}"
        train(tiny("dcgan", steps=3, r1_gamma=gamma), run, **quiet)
        runs[gamma] = load_latest(run / "checkpoints").weights
    d_keys = [k for k in runs[0.0] if k.startswith("D.") and k.endswith("weight")]
    assert any(not torch.equal(runs[0.0][k], runs[10.0][k]) for k in d_keys)


def test_the_default_preset_validates_and_trains_as_shipped(tmp_path):
    """`ganforge train` with no arguments: the preset's own networks, batch, loss and optimiser, a few steps on CPU."""
    from ganforge.config import load_config
    from ganforge.defaults import DEFAULT_PRESET

    cfg = load_config(DEFAULT_PRESET, ["train.steps=3", "train.device=cpu"])
    assert (cfg.model.g_width, cfg.model.d_width, cfg.train.batch_size) == (32, 32, 32)
    assert (cfg.train.loss, cfg.train.r1_gamma, cfg.train.r2_gamma) == ("rpgan", 0.1, 0.1)  # R3GAN's loss (issue 36)
    assert load_config(DEFAULT_PRESET).train.steps == 2500  # a fixed step budget: the same run on every machine
    summary = train(cfg, tmp_path / "run", **quiet)
    assert summary.steps == 3 and math.isfinite(summary.last["loss_g"]) and math.isfinite(summary.last["loss_d"])
    assert (tmp_path / "run" / "real_vs_fake.png").is_file()


def test_train_with_no_preset_trains_the_default(tmp_path):
    """The CLI's default and its help name the same preset, and a run with no preset is that preset."""
    from typer.testing import CliRunner

    from ganforge.cli import app
    from ganforge.defaults import DEFAULT_PRESET

    runner = CliRunner()
    assert DEFAULT_PRESET in runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    res = runner.invoke(app, ["train", "--dry-run", "--device", "cpu", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0 and f"dry run ok: {DEFAULT_PRESET}:" in res.output
