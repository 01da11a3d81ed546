"""The r3gan family (issue 36): the paper's blocks and fix-up init, its schedules' end points, a tiny run that
learns, exact resume with every schedule and the lazy penalties on, and its presets."""
from __future__ import annotations

import math

import pytest
import torch

from ganforge.config import load_config, model_config, validate
from ganforge.data import build_dataset
from ganforge.errors import UserError
from ganforge.families import build_models
from ganforge.families.contract import RunContext
from ganforge.families.parts.r3gan_nets import ACT_GAIN, Conv, ResidualBlock, lowpass_kernel
from ganforge.families.r3gan import R3ganTrainer
from ganforge.apps.sampling import load_generator
from ganforge.train import train
from ganforge.train.optim import build_optimizers, set_hyperparameters

quiet = dict(progress=False, log=lambda s: None)


def _model(**kw):
    return model_config(family="r3gan", image_size=32, channels=3, z_dim=16, **{"g_width": 16, "d_width": 16, "max_channels": 32, **kw})


@pytest.mark.parametrize("size, channels", [(16, 1), (32, 3), (64, 3)])
def test_shapes_and_stages(size, channels):
    cfg = model_config(family="r3gan", image_size=size, channels=channels, g_width=16, d_width=16, z_dim=8)
    G, D = build_models(cfg)
    x = G(torch.randn(3, 8))
    assert x.shape == (3, channels, size, size) and D(x).shape == (3,)
    stages = int(math.log2(size)) - 1  # 4x4 up to the image
    assert len(G.stages) == len(D.stages) == stages


def test_the_output_is_linear_as_the_papers_unless_tanh():
    cfg = model_config(family="r3gan", image_size=16, g_width=8, d_width=8, z_dim=8)
    torch.manual_seed(0)
    G = build_models(cfg)[0]
    with torch.no_grad():
        G.to_image.weight.mul_(50)  # drive the output far out
        linear = G(torch.randn(16, 8))
        G.tanh = True
        squashed = G(torch.randn(16, 8))
    assert linear.abs().max() > 1 and squashed.abs().max() <= 1
    assert load_config("r3gan-mnist").model.tanh and not load_config("r3gan-cifar10").model.tanh


def test_blocks_are_inverted_bottlenecks_with_grouped_3x3_and_no_normalisation():
    G, D = build_models(_model(expansion=2, group_channels=16))
    block = next(m for m in G.modules() if isinstance(m, ResidualBlock))
    assert (block.expand.kernel_size, block.spatial.kernel_size, block.project.kernel_size) == ((1, 1), (3, 3), (1, 1))
    assert block.expand.out_channels == 2 * block.expand.in_channels  # widened inside
    assert block.spatial.groups == block.spatial.in_channels // 16
    norms = (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm)
    assert not any(isinstance(m, norms) for net in (G, D) for m in net.modules())
    assert not any(isinstance(m, torch.nn.Linear) and m.in_features == m.out_features for m in G.modules())  # no mapping


def test_fixup_zeroes_each_blocks_last_conv_and_scales_the_others():
    cfg = _model(blocks=2)
    torch.manual_seed(0)
    G, D = build_models(cfg)  # the family's own init, not DCGAN's N(0, 0.02)
    for net in (G, D):
        blocks = [m for m in net.modules() if isinstance(m, ResidualBlock)]
        assert len(blocks) == 8
        for b in blocks:
            assert torch.count_nonzero(b.project.weight) == 0
            fan_in = b.expand.weight[0].numel()
            want = ACT_GAIN * len(blocks) ** -0.25 / math.sqrt(fan_in)
            assert b.expand.weight.std().item() == pytest.approx(want, rel=0.15)
        # so every block starts as the identity
        x = torch.randn(2, blocks[0].expand.in_channels, 8, 8)
        assert torch.equal(blocks[0](x), x)
    other = [m.weight for m in D.modules() if isinstance(m, Conv)]
    assert not any(abs(w.std().item() - 0.02) < 0.002 for w in other if w.numel() > 100 and w.abs().sum() > 0)


def test_resampling_filter_is_1_2_1_and_keeps_a_flat_image_flat():
    k = lowpass_kernel()
    assert torch.allclose(k[0] / k[0, 0], torch.tensor([1.0, 3.0, 3.0, 1.0]))  # [1,2,1] * [1,1]
    G, D = build_models(_model())
    up, down = G.stages[1][0], D.stages[0][-1]
    flat = torch.ones(1, up.proj.in_channels if up.proj else 32, 8, 8)
    inner = up.__class__(flat.shape[1], flat.shape[1], up=True)(flat)
    assert inner.shape[-1] == 16 and torch.allclose(inner[..., 2:-2, 2:-2], torch.ones(1), atol=1e-6)
    shrunk = down.__class__(4, 4, up=False)(torch.ones(1, 4, 8, 8))
    assert shrunk.shape[-1] == 4 and torch.allclose(shrunk[..., 1:-1, 1:-1], torch.ones(1), atol=1e-6)


def _trainer(model_kw: dict, steps: int = 100, batch: int = 32):
    cfg = validate({"model": {"family": "r3gan", "image_size": 16, "g_width": 16, "d_width": 16, "z_dim": 8,
                              **model_kw}, "train": {"steps": steps, "epochs": None, "batch_size": batch,
                                                     "device": "cpu"}})
    G, D = build_models(cfg.model)
    return R3ganTrainer(cfg, {"G": G, "D": D}, RunContext(torch.device("cpu"), total_steps=steps)), cfg


def test_schedules_run_from_start_to_end_over_the_run():
    recipe = dict(lr=[2e-4, 5e-5], beta2=[0.9, 0.99], gamma=[0.05, 0.005], ema_kimg=[0.0, 5.0], augment_p=[0.0, 0.3])
    t, cfg = _trainer(recipe, steps=100)
    for name, (start, end) in recipe.items():
        assert t.value(name, 0) == pytest.approx(start) and t.value(name, 100) == pytest.approx(end)
        assert min(start, end) < t.value(name, 50) < max(start, end)  # a cosine in between, not a jump
    specs = t.optimizers()
    opts = build_optimizers(specs, t.nets, cfg.train, torch.device("cpu"))
    for step, lr, beta2 in ((0, 2e-4, 0.9), (100, 5e-5, 0.99)):
        set_hyperparameters(opts["D"], specs["D"], step, 100, None)
        group = opts["D"].param_groups[0]
        assert group["lr"] == pytest.approx(lr) and group["betas"] == (0.0, pytest.approx(beta2))
    # EMA: a half-life of 0 copies G; at the end 5,000 images / 32 a step: 0.5 ** (32 / 5000)
    assert t.ema_decay(0) == 0.0 and t.ema_decay(100) == pytest.approx(0.5 ** (32 / 5000))


def test_schedule_kimg_ends_the_schedules_early_then_holds():
    t, _ = _trainer({"gamma": [1.0, 0.1], "schedule_kimg": 1.6}, steps=100, batch=32)  # 1,600 images: 50 steps
    assert t.value("gamma", 50) == pytest.approx(0.1) and t.value("gamma", 90) == pytest.approx(0.1)
    assert t.value("gamma", 25) == pytest.approx(0.55)


def _digits(**train_kw):
    return validate({
        "model": {"family": "r3gan", "image_size": 16, "channels": 1, "z_dim": 16, "g_width": 16, "d_width": 16, "max_channels": 32,
                  "blocks": 1, "lr": [1e-3, 2e-4], "gamma": [0.1, 0.01], "ema_kimg": [0.0, 1.0]},
        "data": {"spec": "mnist-embedded", "limit": 512},
        "train": {"steps": 100, "epochs": None, "batch_size": 32, "seed": 0, "threads": 1, "device": "cpu",
                  "log_every": 25, "n_fixed": 16, "sample_every": 50, "checkpoint_every": 50,
                  "ema": {"enabled": True}, **train_kw},
        "guard": {"class_fade_share": 0.0}, "eval": {"final": False}})


def test_a_tiny_run_learns_the_digits_ink(tmp_path):
    """Digits are dark with a bright stroke in the middle: after 100 steps G's mean image is close to the data's,
    an untrained G's is not (its output is noise around 0)."""
    cfg = _digits()
    data = build_dataset(cfg.data, cfg.model)
    real = torch.stack([data[i][0] for i in range(256)])
    untrained = build_models(cfg.model)[0](torch.randn(256, 16)).detach().clamp(-1, 1)
    train(cfg, tmp_path / "run", **quiet)
    fake = load_generator(tmp_path / "run").sample(256, seed=0)

    def gap(x):
        return (x.mean(0) - real.mean(0)).pow(2).mean().item()

    assert gap(fake) < 0.25 * gap(untrained), (gap(fake), gap(untrained))
    assert fake.std(0).mean() > 0.2  # and the samples differ from one another


def test_resume_is_exact_with_augmentation_lazy_penalties_and_every_schedule(tmp_path, tiny, assert_same_run,
                                                                               resume_device):
    cfg = tiny("r3gan", steps=12, ema={"enabled": True}, device=resume_device)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"augment_p": (0.2, 0.5), "reg_every": 3,
                                                                      "ema_kimg": (0.0, 0.5)})})
    train(cfg, tmp_path / "straight", **quiet)
    train(cfg, tmp_path / "resumed", stop_after_steps=5, **quiet)
    assert train(cfg, tmp_path / "resumed", resume=True, **quiet).steps == 12
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def test_other_families_recipe_keys_are_refused():
    with pytest.raises(UserError, match=r"train\.lr_g: family 'r3gan' does not read it"):
        validate({"model": {"family": "r3gan"}, "train": {"steps": 2, "lr_g": 1e-3}})


@pytest.mark.parametrize("name, size, channels, gpu", [("r3gan-mnist", 32, 1, False), ("r3gan-small", 32, 3, False),
                                                       ("r3gan-cifar10", 32, 3, True), ("r3gan-ffhq64", 64, 3, True)])
def test_presets_load_and_the_gpu_recipes_say_so(name, size, channels, gpu):
    from ganforge.config import preset_dict

    cfg = load_config(name)
    assert (cfg.model.family, cfg.model.image_size, cfg.model.channels) == ("r3gan", size, channels)
    assert ("GPU" in preset_dict(name)["description"]) == gpu
    if gpu:  # the paper's numbers
        widths = [768] * 4 + ([384] if size == 64 else [])  # 4x4 up to the image, as the authors' presets
        assert cfg.model.stage_widths("G") == widths and cfg.model.blocks == 2
        assert cfg.model.lr == (2e-4, 5e-5) and cfg.model.beta2 == (0.9, 0.99)
    else:
        G, D = build_models(cfg.model)
        assert D(G(torch.randn(2, cfg.model.z_dim))).shape == (2,)
