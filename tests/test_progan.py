"""ProGAN: the fade-in's exactness, equalized learning rate, the growth schedule, per-resolution batches, and what a
run records. Exact resume (also in the middle of a fade-in), NaN rollback, SIGKILL and two processes are the engine's
tests, which cover progan through FAMILIES in conftest.py."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ganforge.checkpoint import load_latest
from ganforge.config import model_config, validate
from ganforge.errors import UserError
from ganforge.families import build_models
from ganforge.families.parts.equalized import EqualizedConv2d, EqualizedLinear, downscale_to, upscale_to
from ganforge.families.progan import GrowthSchedule, ProganDiscriminator, growth
from ganforge.train import train

quiet = dict(progress=False, log=lambda s: None)


def _nets(size=32, channels=3):
    torch.manual_seed(0)
    cfg = model_config(family="progan", image_size=size, channels=channels, g_width=8, d_width=8, max_channels=16,
                       z_dim=16)
    G, D = build_models(cfg)
    return cfg, G, D


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_at_alpha_0_a_grown_generator_outputs_exactly_the_previous_resolution_upsampled(stage):
    cfg, G, _ = _nets()
    with torch.no_grad():  # train a little so the new block is not a no-op by accident
        for p in G.parameters():
            p.add_(0.1 * torch.randn_like(p))
    z = torch.randn(6, 16)
    prev = G.at_stage(z, stage=stage - 1, alpha=1.0)
    grown = G.at_stage(z, stage=stage, alpha=0.0)
    assert grown.shape[-1] == 2 * prev.shape[-1]
    assert torch.equal(grown, upscale_to(prev, grown.shape[-1]))
    assert not torch.equal(G.at_stage(z, stage=stage, alpha=0.5), grown)  # the new block does take part
    G.set_progress(stage, 0.0)
    a = G(z)
    G.set_progress(stage - 1, 1.0)
    assert torch.equal(a, G(z))  # the final-size images too


@pytest.mark.parametrize("stage", [1, 3])
def test_at_alpha_0_a_grown_discriminator_judges_the_downscaled_image_as_before(stage):
    cfg, _, D = _nets()
    x = torch.randn(8, 3, 32, 32)
    x = downscale_to(x, cfg.resolutions[stage])
    assert torch.equal(D(x, stage=stage, alpha=0.0), D(F.avg_pool2d(x, 2), stage=stage - 1, alpha=1.0))


def test_equalized_layers_scale_their_weights_by_hes_constant_at_run_time():
    conv = EqualizedConv2d(5, 7, 3)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 5, 8, 8)
    expected = F.conv2d(x, conv.weight * math.sqrt(2 / (5 * 3 * 3)), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-6)
    lin = EqualizedLinear(10, 4)
    v = torch.randn(3, 10)
    torch.testing.assert_close(lin(v), F.linear(v, lin.weight * math.sqrt(2 / 10), lin.bias), rtol=0, atol=1e-6)
    to_rgb = EqualizedConv2d(6, 3, 1, gain=1.0)
    assert to_rgb.scale == pytest.approx(1 / math.sqrt(6))
    # stored weights stay N(0, 1): the registry's N(0, 0.02) initialisation leaves them alone
    _, G, D = _nets()
    w = torch.cat([m.weight.flatten() for net in (G, D) for m in net.modules()
                   if isinstance(m, (EqualizedConv2d, EqualizedLinear))])
    assert abs(w.std().item() - 1.0) < 0.05
    assert not any(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for net in (G, D) for m in net.modules())


def test_growth_fades_in_linearly_then_holds_each_stage():
    fade, stable = 100, 200
    assert growth(0, 4, fade, stable) == (0, 1.0)
    assert growth(199, 4, fade, stable) == (0, 1.0)  # the first stage has no fade-in
    assert growth(200, 4, fade, stable) == (1, 0.0)
    assert growth(225, 4, fade, stable) == (1, 0.25)
    assert growth(250, 4, fade, stable) == (1, 0.5)
    assert growth(300, 4, fade, stable) == (1, 1.0)
    assert growth(499, 4, fade, stable) == (1, 1.0)
    assert growth(500, 4, fade, stable) == (2, 0.0)
    assert growth(875, 4, fade, stable) == (3, 0.75)
    assert growth(10 ** 9, 4, fade, stable) == (3, 1.0)  # the last stage stays
    assert growth(500, 4, 0, stable) == (2, 1.0)  # no fade: a plain switch
    assert growth(10 ** 6, 1, fade, stable) == (0, 1.0)


def test_images_shown_follow_the_per_resolution_batch_sizes():
    s = GrowthSchedule(resolutions=(4, 8, 16), fade_images=64, stable_images=32, step_images=(32, 32, 16))
    assert [s.images_at_step(k) for k in range(10)] == [0, 32, 64, 96, 128, 144, 160, 176, 192, 208]
    assert [s.progress(s.images_at_step(k)) for k in (0, 1, 2, 3, 4, 5, 8)] == \
        [(0, 1.0), (1, 0.0), (1, 0.5), (1, 1.0), (2, 0.0), (2, 0.25), (2, 1.0)]
    odd = GrowthSchedule(resolutions=(4, 8), fade_images=10, stable_images=50, step_images=(24, 8))
    assert [odd.images_at_step(k) for k in range(5)] == [0, 24, 48, 72, 80]  # 72 overshoots 50: 8x8 from there


def test_the_tiny_config_resumes_in_the_middle_of_a_fade_in(tiny):
    """The FAMILIES resume test stops progan at step 5: make sure that is inside a fade-in, at batch 16."""
    s = GrowthSchedule.of(tiny("progan", steps=12))
    stage, alpha = s.progress(s.images_at_step(5))
    assert stage == 2 and 0 < alpha < 1 and s.step_images[stage] == 16
    assert s.progress(s.images_at_step(12)) == (2, 1.0)


def test_a_run_grows_uses_each_resolutions_batch_and_draws_grids_at_the_final_size(tmp_path, tiny, monkeypatch):
    seen = []
    forward = ProganDiscriminator.forward

    def recording(self, x, y=None, stage=None, alpha=None):
        seen.append((tuple(x.shape), stage))
        return forward(self, x, y, stage, alpha)

    monkeypatch.setattr(ProganDiscriminator, "forward", recording)
    run = tmp_path / "run"
    cfg = tiny("progan", steps=9, log_every=1, ema={"enabled": True, "decay": 0.9})
    train(cfg, run, **quiet)
    trained = {(shape[0], shape[-1]) for shape, stage in seen if stage is not None}
    assert trained == {(32, 4), (32, 8), (16, 16)}  # batch_sizes={16: 16}, train.batch_size 32 elsewhere
    recs = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if "loss_d" in json.loads(l)]
    assert [r["resolution"] for r in recs] == [4, 8, 8, 8, 16, 16, 16, 16, 16]
    assert [r["alpha"] for r in recs] == [1.0, 0.0, 0.5, 1.0, 0.0, 0.25, 0.5, 0.75, 1.0]
    assert all(k in recs[0] for k in ("loss_d", "loss_g", "wasserstein", "gp", "grad_norm", "drift"))
    ck = load_latest(run / "checkpoints")
    assert ck.state["extra"]["stage"] == 2 and ck.state["extra"]["images_seen"] == 208
    assert int(ck.weights["G.stage"]) == int(ck.weights["G_ema.stage"]) == int(ck.weights["D.stage"]) == 2
    sizes = {Image.open(p).size for p in (run / "samples").glob("*.png")}
    assert len(sizes) == 1  # the untrained 4x4 grid and the last 16x16 one: all at the final size


def test_a_per_resolution_batch_above_the_loaded_batch_is_an_error_naming_the_key(tiny):
    cfg = tiny("progan").model_dump()
    cfg["model"]["batch_sizes"] = {8: 64}
    with pytest.raises(UserError, match=r"model\.batch_sizes\[8\]=64 exceeds train\.batch_size=32"):
        validate(cfg)
    cfg["model"]["batch_sizes"] = {12: 16}
    with pytest.raises(UserError, match="batch_sizes: resolution 12"):
        validate(cfg)
    cfg["model"]["batch_sizes"] = {64: 64}  # above image_size: not used, not an error
    assert validate(cfg).model.batch_sizes == {64: 64}
    with pytest.raises(UserError, match="batch_norm"):
        validate({"model": {"family": "progan", "batch_norm": True}})
    with pytest.raises(UserError, match="start_size=16"):
        validate({"model": {"family": "progan", "image_size": 16, "start_size": 16}})


def test_presets_build_at_their_sizes():
    from ganforge.config import load_config

    for name, size, channels in (("progan-mnist", 32, 1), ("progan-celeba", 128, 3)):
        cfg = load_config(name)
        G, D = build_models(cfg.model)
        assert cfg.train.loss == "wgan-gp" and (cfg.model.image_size, cfg.model.channels) == (size, channels)
        G.set_progress(len(cfg.model.resolutions) - 1, 1.0)
        D.set_progress(len(cfg.model.resolutions) - 1, 1.0)
        x = G(torch.randn(2, cfg.model.z_dim))
        assert x.shape == (2, channels, size, size) and D(x).shape == (2,)
