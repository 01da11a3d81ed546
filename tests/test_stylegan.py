"""StyleGAN family: the properties its generator promises (demodulation, truncation, mixing, noise), its config
checks, and a tiny run. The engine's promises (exact resume, NaN rollback, SIGKILL, two processes) come from
``FAMILIES`` in conftest."""
from __future__ import annotations

import json

import pytest
import torch

from ganforge.config import load_config, model_config
from ganforge.errors import UserError
from ganforge.families import build_models
from ganforge.families.stylegan import ModulatedConv2d, NoiseInput, StyleGenerator
from ganforge.train import train

quiet = dict(progress=False, log=lambda s: None)


def generator(style: str = "modulated", size: int = 16, noise: float = 0.0) -> StyleGenerator:
    torch.manual_seed(0)
    cfg = model_config(family="stylegan", image_size=size, channels=1, z_dim=8, w_dim=16, g_width=8, d_width=8,
                       max_channels=32, style=style)
    g, _ = build_models(cfg)
    with torch.no_grad():
        g.w_avg.normal_()  # a mean of w that is not zero, as after training
        for m in g.modules():
            if isinstance(m, NoiseInput):
                m.strength.fill_(noise)
    return g.eval()


def test_demodulation_gives_unit_variance_outputs_for_unit_variance_inputs():
    torch.manual_seed(0)
    conv = ModulatedConv2d(64, 48, w_dim=32, kernel=3)
    x = torch.randn(16, 64, 24, 24)
    w = torch.randn(16, 32) * 3  # widely varying styles
    with torch.no_grad():
        y = conv(x, w)[:, :, 1:-1, 1:-1]  # away from the zero padding
    assert abs(y.std().item() - 1.0) < 0.05
    per_sample = y.std(dim=(1, 2, 3))
    assert (per_sample - 1).abs().max() < 0.15  # every sample's style, not just on average


@pytest.mark.parametrize("style", ["modulated", "adain"])
@pytest.mark.parametrize("noise_mode", ["const", "none"])
def test_truncation_zero_gives_the_mean_w_image_for_every_seed(style, noise_mode):
    g = generator(style, noise=0.3)
    z = torch.randn(5, g.z_dim)
    with torch.no_grad():
        imgs = g(z, truncation_psi=0.0, noise_mode=noise_mode)
        mean_img = g.synthesis(g.broadcast(g.w_avg[None]), noise_mode=noise_mode)
        assert torch.allclose(g.mapping(z, truncation_psi=0.0), g.w_avg.expand(5, -1))
    assert torch.allclose(imgs, imgs[:1].expand_as(imgs), atol=1e-6)  # one image for every seed ...
    assert torch.allclose(imgs, mean_img.expand_as(imgs), atol=1e-4)  # ... w_avg's (batch-size kernels differ a bit)
    assert not torch.allclose(g(z, noise_mode=noise_mode)[0], g(z, noise_mode=noise_mode)[1])


@pytest.mark.parametrize("style", ["modulated", "adain"])
def test_style_mixing_with_crossover_zero_is_the_second_seeds_image(style):
    g = generator(style, noise=0.3)
    za, zb = torch.randn(3, g.z_dim), torch.randn(3, g.z_dim)
    with torch.no_grad():
        ws_a, ws_b = g.broadcast(g.mapping(za)), g.broadcast(g.mapping(zb))

        def mix(cut):
            return g.synthesis(torch.cat([ws_a[:, :cut], ws_b[:, cut:]], dim=1), noise_mode="const")

        assert torch.equal(mix(0), g(zb, noise_mode="const"))
        assert torch.equal(mix(g.num_ws), g(za, noise_mode="const"))
        middle = mix(g.default_crossover)
    assert not torch.allclose(middle, mix(0)) and not torch.allclose(middle, mix(g.num_ws))


@pytest.mark.parametrize("style", ["modulated", "adain"])
def test_noise_off_or_fixed_makes_the_generator_deterministic(style):
    g = generator(style, noise=0.5)
    z = torch.randn(4, g.z_dim)
    with torch.no_grad():
        for mode in ("none", "const"):
            assert torch.equal(g(z, noise_mode=mode), g(z, noise_mode=mode))
        assert not torch.equal(g(z, noise_mode="random"), g(z, noise_mode="random"))
        assert not torch.equal(g(z, noise_mode="none"), g(z, noise_mode="const"))
    with pytest.raises(ValueError, match="noise_mode"):
        g(z, noise_mode="fresh")


def test_layout_num_ws_and_const_noise_are_checkpointed():
    for size in (16, 32, 64):
        for style in ("modulated", "adain"):
            g = generator(style, size)
            assert g.num_ws == 2 * (size.bit_length() - 1) - 2
            assert 0 < g.default_crossover < g.num_ws
            assert g(torch.randn(2, g.z_dim)).shape == (2, 1, size, size)
    keys = g.state_dict().keys()
    assert "w_avg" in keys and any(k.endswith("noise_const") for k in keys)


def test_w_avg_is_tracked_only_while_training():
    g = generator()
    z = torch.randn(16, g.z_dim)
    before = g.w_avg.clone()
    g.mapping(z)  # eval mode
    assert torch.equal(g.w_avg, before)
    g.train()
    w = g.mapping(z)
    assert torch.allclose(g.w_avg, before.lerp(w.detach().mean(0), 0.005))
    after = g.w_avg.clone()
    g.mapping(z, update_w_avg=False)
    assert torch.equal(g.w_avg, after)


def test_mapping_layers_learn_at_lr_mul():
    cfg = model_config(family="stylegan", image_size=16, z_dim=64, w_dim=64, mapping_layers=8, mapping_lr_mul=0.01)
    g, _ = build_models(cfg)
    fcs = g.mapping_net.fcs
    assert len(fcs) == 8
    for fc in fcs:
        assert fc.lr_mul == 0.01
        assert abs(fc.weight.std().item() - 100) < 5  # stored ~ N(0, 1) / lr_mul ...
        assert abs((fc.weight * fc.scale).std().item() - (2 / 64) ** 0.5) < 0.01  # ... used at He's scale
    # an Adam-like unit step on the stored weight moves the used weight lr_mul times less than in a normal layer
    fc = fcs[0]
    assert fc.scale == pytest.approx(2 ** 0.5 / 8 * 0.01)


def test_generator_and_discriminator_take_labels_and_give_logits():
    g = generator()
    _, d = build_models(model_config(family="stylegan", image_size=16, g_width=8, d_width=8, max_channels=32))
    x = g(torch.randn(4, g.z_dim), torch.tensor([0, 1, 2, 3]))
    assert x.min() >= -1 and x.max() <= 1
    assert d(x, torch.tensor([0, 1, 2, 3])).shape == (4,)


def test_style_mixing_in_training_draws_a_second_latent(tiny):
    from ganforge.families.stylegan import StyleganTrainer
    from ganforge.families.contract import RunContext

    cfg = tiny("stylegan")
    for p, mixed in ((1.0, True), (0.0, False)):
        cfg.model.style_mixing = p
        g, d = build_models(cfg.model)
        t = StyleganTrainer(cfg, {"G": g, "D": d}, RunContext(torch.device("cpu")))
        ws = t.styles(6)
        assert ws.shape == (6, g.num_ws, cfg.model.w_dim)
        assert torch.equal(ws[:, 0], ws[:, 1])  # the cutoff is at least 1
        assert (not torch.equal(ws[:, 0], ws[:, -1])) == mixed


@pytest.mark.parametrize("style", ["modulated", "adain"])
def test_a_tiny_run_has_finite_losses_and_logs_its_regularisers(tmp_path, tiny, style):
    cfg = tiny("stylegan", steps=8)
    cfg.model.style = style
    summary = train(cfg, tmp_path / "run", **quiet)
    assert summary.steps == 8
    recs = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    seen = {k for r in recs for k in r}
    assert {"loss_g", "loss_d", "d_real", "d_fake", "r1", "pl_penalty", "pl_mean"} <= seen
    for r in recs:
        assert all(v == v and abs(v) < 1e6 for k, v in r.items() if isinstance(v, float) and k != "time")
    assert sum(r.get("skipped", 0) for r in recs) == 0
    assert list((tmp_path / "run" / "samples").glob("*.png"))


@pytest.mark.parametrize("key, value, match", [
    ("model.image_size", 24, r"image_size=24 must be a power of two"),
    ("model.style", "adaptive", r"model\.style"),
    ("model.max_channels", 4, r"max_channels=4"),
    ("model.pl_every", 0, r"model\.pl_every"),
    ("model.mapping_lr_mul", 0, r"model\.mapping_lr_mul"),
    ("model.style_mixing", 1.5, r"model\.style_mixing"),
    ("model.dropout", 0.5, r"model\.dropout: unknown key for family 'stylegan'"),
])
def test_config_errors_name_the_key(key, value, match):
    with pytest.raises(UserError, match=match):
        load_config("stylegan-mnist", values={key: value})


def test_options_of_other_recipes_are_refused(tmp_path, tiny):
    cfg = tiny("stylegan")
    cfg.train.gp_lambda = 10.0
    with pytest.raises(UserError, match=r"train\.gp_lambda: family 'stylegan' does not read it"):
        train(cfg, tmp_path / "run", **quiet)
    cfg = tiny("stylegan", loss="wgan-gp")  # it reads train.loss: bce (its default) or rpgan, nothing else
    with pytest.raises(UserError, match=r"train\.loss=wgan-gp: stylegan trains with bce .* or rpgan"):
        train(cfg, tmp_path / "run2", **quiet)


@pytest.mark.parametrize("name, size, channels", [("stylegan-mnist", 32, 1), ("stylegan-celeba", 64, 3),
                                                  ("stylegan-celeba128", 128, 3)])
def test_presets_build(name, size, channels):
    cfg = load_config(name)
    assert (cfg.model.image_size, cfg.model.channels, cfg.model.mapping_layers) == (size, channels, 8)
    assert cfg.train.ema.enabled and cfg.train.r1_gamma > 0
    if size == 32:
        g, d = build_models(cfg.model)
        x = g(torch.randn(2, cfg.model.z_dim))
        assert x.shape == (2, channels, size, size) and d(x).shape == (2,)
