"""Architectures: the seeds' exact parameter counts, shapes at every size, conditioning that matters."""
from __future__ import annotations

import pytest
import torch

from conftest import FAMILIES, TRANSLATION_DATA, family_model

from ganforge.config import model_config, load_config
from ganforge.families import build_models, count_parameters


def counts(**kw):
    g, d = build_models(model_config(**kw))
    return count_parameters(g), count_parameters(d)


def test_pytorch_dcgan_tutorial_counts():
    # the seeds' CelebA generator/discriminator (PyTorch DCGAN tutorial, ngf=ndf=64, 64x64x3)
    assert counts(family="dcgan", image_size=64, channels=3, g_width=64, d_width=64) == (3_576_704, 2_765_568)


def test_svhn_notebook_counts():
    # seeds' SVHN notebook: conv_dim=32, Linear 100->4*4*128 and 4*4*128->1
    assert counts(family="dcgan", image_size=32, channels=3, g_width=32, d_width=32,
                  g_input="linear", d_output="linear") == (372_416, 167_809)


def test_conditional_dcgan_counts():
    # seeds' cDCGAN (ngf=ndf=128, 32x32, default conv biases)
    assert counts(family="cdcgan", image_size=32, channels=1, g_width=128, d_width=128, bias=True) == (3_076_737, 2_643_329)


def test_mlp_notebook_counts_and_batchnorm_switch():
    kw = dict(family="mlp", image_size=28, g_width=32, d_width=32)
    assert counts(batch_norm=False, **kw) == (114_800, 110_849)
    g, d = build_models(model_config(batch_norm=True, **kw))
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in g.modules())
    # D's input layer never gets BatchNorm: its first module after the Linear is the activation
    assert isinstance(d.net[1], torch.nn.LeakyReLU)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in TRANSLATION_DATA])  # those: test_translation
@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes(family, size, channels):
    cfg = model_config(**family_model(family), image_size=size, channels=channels, g_width=4, d_width=4, z_dim=8)
    g, d = build_models(cfg)
    z = torch.randn(3, 8)
    y = torch.tensor([0, 5, 9])
    x = g(z, y)
    assert x.shape == (3, channels, size, size)
    if family != "r3gan":  # r3gan's output is linear, as the paper's: the samplers clamp it
        assert x.min() >= -1 and x.max() <= 1  # tanh output
    assert d(x, y).shape == (3,)
    if hasattr(d, "class_logits"):  # a classifying discriminator: K logits, the real/fake logit their logsumexp
        assert d.class_logits(x).shape == (3, cfg.num_classes)
        d.eval()  # no dropout: the same logits twice
        assert torch.allclose(d(x, y), torch.logsumexp(d.class_logits(x), dim=1), atol=1e-5)


def test_salimans_mnist_networks():
    # Improved Techniques for Training GANs, MNIST: D 1000-500-250-250-250 (weight-normalised), G 500-500
    g, d = build_models(model_config(family="ssgan", arch="mlp", image_size=28, channels=1, g_width=500,
                                     d_width=250, z_dim=100))
    linear = [m for m in d.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linear] == [1000, 500, 250, 250, 250, 10]
    assert all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in linear)
    assert [m.out_features for m in g.modules() if isinstance(m, torch.nn.Linear)] == [500, 500, 784]
    d.train()
    x = torch.zeros(4, 1, 28, 28)
    assert not torch.equal(d.class_logits(x), d.class_logits(x))  # Gaussian noise while training
    d.eval()
    assert torch.equal(d.class_logits(x), d.class_logits(x))


def test_large_sizes_build():
    g, d = build_models(model_config(family="dcgan", image_size=256, channels=3, g_width=2, d_width=2, z_dim=4))
    assert g(torch.randn(1, 4)).shape == (1, 3, 256, 256)


def test_conditional_generator_uses_the_label():
    cfg = model_config(family="cdcgan", image_size=16, g_width=8, d_width=8, z_dim=8)
    g, d = build_models(cfg)
    g.eval()
    z = torch.randn(1, 8).repeat(2, 1)
    x = g(z, torch.tensor([1, 7]))
    assert not torch.allclose(x[0], x[1])
    with pytest.raises(ValueError, match="labels"):
        g(z)


def test_init_follows_dcgan():
    g, d = build_models(model_config(family="dcgan", image_size=32, g_width=64, d_width=64))
    w = torch.cat([m.weight.flatten() for m in d.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.001


@pytest.mark.parametrize("name", ["mnist-mlp", "dcgan-mnist", "dcgan-svhn", "dcgan-celeba", "dcgan-cifar10", "cdcgan-mnist"])
def test_every_preset_builds_and_runs_forward(name):
    cfg = load_config(name).model
    g, d = build_models(cfg)
    z = torch.randn(2, cfg.z_dim)
    y = torch.tensor([0, 1])
    x = g(z, y)
    assert x.shape == (2, cfg.channels, cfg.image_size, cfg.image_size)
    assert d(x, y).shape == (2,)
