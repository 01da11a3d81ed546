"""The offline extractors for any images: random-conv, random-conv-x4 (no weights) and ssl-conv (learnt from the
reference, cached). Each must rank clean reals < noised reals < pure noise by FID."""
from __future__ import annotations

import pytest
import torch

from ganforge.errors import UserError
from ganforge.metrics import extractors as ex
from ganforge.metrics.extractors import ssl_conv
from ganforge.metrics.frechet import RunningStats, frechet_distance

TINY = ssl_conv.SslSettings(steps=40, batch=64, widths=(16, 32, 64, 128))


@pytest.fixture(scope="module")
def digits():
    from ganforge.data.embedded import build

    return build(channels=1, size=32, split="test").tensor  # 1,000 digits


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path))
    return tmp_path / "ssl-conv"


def fid(ext, a: torch.Tensor, b: torch.Tensor) -> float:
    sa, sb = RunningStats(), RunningStats()
    sa.update(ext(a)["features"])
    sb.update(ext(b)["features"])
    return float(frechet_distance(sa.mean, sa.cov, sb.mean, sb.cov))


@pytest.mark.parametrize("name", ["random-conv", "random-conv-x4"])
def test_random_conv_shapes_and_determinism(name):
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    a, b = ex.get_extractor(name, "cpu"), ex.get_extractor(name, "cpu")
    fa = a(x)
    assert fa["features"].shape == (6, a.feature_dim) and fa["logits"] is None
    assert torch.equal(fa["features"], b(x)["features"])  # the weights come from the seed alone
    assert a(x[:, :1])["features"].shape == (6, a.feature_dim)  # grey works, repeated to 3 channels
    assert a(torch.zeros(3, 3, 80, 80))["features"].shape == (3, a.feature_dim)  # any size
    assert not torch.equal(a(x[:3])["features"], a(x[3:])["features"])
    with pytest.raises(UserError, match="no weights file"):
        ex.get_extractor(name, "cpu", weights="w.pth")


def test_ssl_conv_needs_the_reference():
    assert ex.fits_reference("ssl-conv") and not ex.fits_reference("random-conv")
    with pytest.raises(UserError, match="learns from the reference images"):
        ex.get_extractor("ssl-conv", "cpu")


def test_ssl_conv_is_deterministic_cached_and_keyed_by_data(digits, cache, monkeypatch):
    ref = digits[:300]
    enc1, side, path = ssl_conv.fit(ref, TINY, log=lambda s: None)
    assert side == 32 and path.is_file() and path.with_suffix(".json").is_file() and path.parent == cache
    enc2, _, _ = ssl_conv.fit(ref, TINY, use_cache=False, log=lambda s: None)
    for (k, v), v2 in zip(enc1.state_dict().items(), enc2.state_dict().values()):
        assert torch.equal(v, v2), k  # one seed, one encoder

    def no_training(*a, **k):
        raise AssertionError("trained again although cached")

    monkeypatch.setattr(ssl_conv, "train_encoder", no_training)
    ext = ssl_conv.ssl_conv("cpu", reference=lambda: ref, settings=TINY, log=lambda s: None)
    assert ext.weights_path == path
    f = ext(digits[300:310])["features"]
    assert f.shape == (10, ext.feature_dim) and torch.isfinite(f).all()
    assert torch.equal(f, ssl_conv.ssl_conv("cpu", weights=path)(digits[300:310])["features"])
    with pytest.raises(AssertionError, match="trained again"):  # other data: another key, trained anew
        ssl_conv.fit(digits[300:600], TINY, log=lambda s: None)
    path.write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="delete it"):
        ssl_conv.load_encoder(path)


def test_every_offline_extractor_ranks_clean_noised_noise(digits, cache):
    ref, real = digits[:400], digits[400:800]
    gen = torch.Generator().manual_seed(0)
    noised = (real + 0.6 * torch.randn(real.shape, generator=gen)).clamp(-1, 1)
    noise = torch.rand(real.shape, generator=gen) * 2 - 1
    exts = [ex.get_extractor("random-conv"), ex.get_extractor("random-conv-x4"),
            ssl_conv.ssl_conv("cpu", reference=ref, settings=TINY, log=lambda s: None)]
    for ext in exts:
        clean, noisy, pure = fid(ext, real, ref), fid(ext, noised, ref), fid(ext, noise, ref)
        assert clean < noisy < pure, (ext.name, clean, noisy, pure)
        assert clean < 0.25 * noisy, (ext.name, clean, noisy)


def test_get_extractor_hands_ssl_conv_the_reference(monkeypatch, tmp_path):
    seen = []

    def fake_fit(images, settings, use_cache=True, log=print):
        seen.append(images)
        return ssl_conv.ConvEncoder(norm=True).eval(), 32, tmp_path / "enc.safetensors"

    monkeypatch.setattr(ssl_conv, "fit", fake_fit)
    ref = torch.zeros(4, 3, 32, 32)
    ext = ex.get_extractor("ssl-conv", "cpu", reference=lambda: ref)
    assert ext.name == "ssl-conv" and seen and seen[0] is ref


def test_auto_picks_the_digit_classifier_for_digits_and_ssl_conv_otherwise(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (32, 32), (200, 30 * i, 10)).save(tmp_path / f"{i}.png")
    assert ex.resolve("auto", "mnist-embedded") == "mnist-cnn"
    assert ex.resolve("auto", f"folder:{tmp_path}") == "ssl-conv"
    assert ex.registry()["ssl-conv"].offline and not ex.registry()["dinov2-vit-b-14"].offline


def test_colour_distortion_follows_simclr_and_colour_zero_draws_nothing_more():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(400, 3, 8, 8) * 2 - 1
    y = ((x + 1) / 2)
    luma = ssl_conv._grey(y)
    for turns in (0.1, -0.3):
        rotated = ssl_conv._hue_rotate(y, torch.full((400,), turns))
        assert torch.allclose(ssl_conv._grey(rotated), luma, atol=1e-5)  # a hue turn keeps each pixel's luma
        assert not torch.allclose(rotated, y, atol=1e-2)
    assert torch.allclose(ssl_conv._hue_rotate(y, torch.ones(400)), y, atol=1e-5)  # a full turn is no turn
    out = ssl_conv.colour_distort(x, 0.5, gen)
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    grey = (out.amax(dim=1) - out.amin(dim=1)).flatten(1).amax(dim=1) < 1e-6
    assert 0.12 < grey.float().mean() < 0.28  # grey with probability 0.2
    untouched = (out - x).flatten(1).abs().amax(dim=1) < 1e-6
    assert 0.08 < untouched.float().mean() < 0.26  # no distortion 0.2 x 0.8 of the time
    # colour=0 (the default) draws nothing more: the same crops and flips as before the option existed
    a = ssl_conv.augment(x[:8], torch.Generator().manual_seed(1))
    b = ssl_conv.augment(x[:8], torch.Generator().manual_seed(1), colour=0.0)
    assert torch.equal(a, b) and ssl_conv.SslSettings().colour == 0.25  # the default, measured in BENCHMARKS


def test_bench_ssl_conv_variants_parse_and_refuse():
    from ganforge.bench.metric_agreement import ssl_variant

    assert ssl_variant("ssl-conv@steps=600@colour=0.5") == {"steps": 600, "colour": 0.5}
    for bad in ("ssl-conv@hue=1", "ssl-conv@steps=", "random-conv@steps=1", "ssl-conv@steps=many"):
        with pytest.raises(ValueError):
            ssl_variant(bad)
