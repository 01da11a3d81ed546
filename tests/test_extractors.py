"""The feature extractors: the shipped MNIST classifier (offline) and Inception-v3's weight lookup."""
from __future__ import annotations

import importlib.util
import json
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganforge.errors import UserError
from ganforge.metrics import extractors as ex


@pytest.fixture(scope="module")
def cnn():
    return ex.load_mnist_cnn("cpu")


@pytest.fixture(scope="module")
def digits():
    from ganforge.data.embedded import build

    data = build(channels=1, size=32)
    return data.tensor, data.labels


def test_shipped_weights_are_safetensors_not_pickle():
    res = ex._shipped_weights()
    assert res.is_file(), "ganforge/metrics/weights/mnist_cnn.safetensors is missing"
    raw = res.read_bytes()
    assert len(raw) < 5_000_000
    assert not raw.startswith(b"PK") and not raw.startswith(b"\x80")  # torch.save zip / raw pickle
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])  # a safetensors header: JSON, tensors described by dtype/shape/offsets
    meta = header.pop("__metadata__")
    assert meta["format"] == ex.MNIST_CNN_FORMAT
    assert float(meta["heldout_accuracy"]) >= 0.97
    assert all(set(v) == {"dtype", "shape", "data_offsets"} for v in header.values())
    assert ex.mnist_cnn_metadata()["seed"] == meta["seed"]


def test_heldout_split_fixed_and_balanced():
    from ganforge.data.embedded import load_raw

    train, test = ex.heldout_split()
    _, labels = load_raw()
    assert len(test) == 1000 and len(train) == 4000
    assert not set(train.tolist()) & set(test.tolist())
    assert np.bincount(labels[test], minlength=10).tolist() == [100] * 10
    assert test[:3].tolist() == [40, 41, 42]  # classes interleaved 0..9: the 5th digit of each class comes 5th


def test_heldout_accuracy_at_least_97_percent(cnn, digits):
    x, y = digits
    _, test = ex.heldout_split()
    with torch.no_grad():
        pred = cnn(x[test]).argmax(1)
    acc = (pred == y[test]).float().mean().item()
    assert acc >= 0.97, f"held-out accuracy {acc:.4f} < 0.97"


def test_extractor_outputs_shapes_and_determinism(digits):
    x, _ = digits
    e = ex.get_extractor("mnist-cnn", "cpu")
    assert isinstance(e, ex.FeatureExtractor)
    assert (e.name, e.feature_dim, e.num_classes) == ("mnist-cnn", 128, 10)
    out1, out2 = e(x[:64]), e(x[:64])
    assert out1["features"].shape == (64, 128) and out1["logits"].shape == (64, 10)
    assert out1["features"].dtype == torch.float32
    assert torch.equal(out1["features"], out2["features"]) and torch.equal(out1["logits"], out2["logits"])
    # batching inside the extractor does not change the result beyond float noise
    small = ex.MnistCnnExtractor(batch_size=7)(x[:64])
    torch.testing.assert_close(small["features"], out1["features"], atol=1e-4, rtol=1e-4)


def test_28px_3ch_and_other_sizes_accepted(cnn, digits):
    x, y = digits
    _, test = ex.heldout_split()
    xs, ys = x[test[:200]], y[test[:200]]
    x28 = xs[..., 2:-2, 2:-2]  # the 28x28 originals
    x3 = xs.repeat(1, 3, 1, 1)
    x64 = F.interpolate(x28, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        ref = cnn(xs)
        torch.testing.assert_close(cnn(x28), ref)  # 28 -> padded 32 is exactly the 32px layout
        torch.testing.assert_close(cnn(x3), ref, atol=1e-4, rtol=1e-4)
        assert cnn.features(x3).shape == (200, 128)
        acc64 = (cnn(x64).argmax(1) == ys).float().mean().item()
        wide = F.interpolate(x28, size=(28, 40), mode="bilinear", align_corners=False, antialias=True)
        acc_wide = (cnn(wide).argmax(1) == ys).float().mean().item()  # non-square: squeezed back to 28x28
    assert acc64 >= 0.95 and acc_wide >= 0.95


def test_classify_channels_stacked(cnn, digits):
    x, y = digits
    _, test = ex.heldout_split()
    idx = torch.as_tensor(test[:90]).reshape(30, 3)
    stacked = torch.cat([x[idx[:, k]] for k in range(3)], dim=1)  # (30, 3, 32, 32): a digit per channel
    labels = cnn.classify_channels(stacked)
    assert labels.shape == (30, 3) and labels.dtype == torch.long
    assert (labels == y[idx]).float().mean().item() >= 0.9
    assert torch.equal(ex.MnistCnnExtractor().classify_channels(stacked), labels)


def test_bad_inputs_rejected(cnn):
    with pytest.raises(ValueError):
        cnn(torch.zeros(2, 2, 32, 32))
    with pytest.raises(ValueError):
        ex.MnistCnnExtractor()(torch.zeros(2, 32, 32))


def test_unknown_extractor_is_user_error():
    with pytest.raises(UserError, match="choose one of auto, inception-v3, mnist-cnn"):
        ex.get_extractor("vgg-face")


@pytest.mark.skipif(importlib.util.find_spec("torch_fidelity") is None, reason="torch-fidelity not installed")
def test_inception_without_weights_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("GANFORGE_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)  # a set_dir() elsewhere must not leak in
    with pytest.raises(UserError) as err:
        ex.get_extractor("inception-v3")
    msg = str(err.value)
    assert "\n" not in msg
    assert "GANFORGE_INCEPTION_WEIGHTS" in msg and "--inception-weights" in msg and ex.INCEPTION_URL in msg
    assert str(tmp_path / "torch") in msg

    monkeypatch.setenv("GANFORGE_INCEPTION_WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(UserError, match="GANFORGE_INCEPTION_WEIGHTS"):
        ex.InceptionExtractor()
    with pytest.raises(UserError, match="--inception-weights"):
        ex.InceptionExtractor(weights_path=tmp_path / "missing.pth")


@pytest.mark.skipif(importlib.util.find_spec("torch_fidelity") is None, reason="torch-fidelity not installed")
def test_inception_refuses_pickled_code(tmp_path):
    """A weights file is read with weights_only=True: a pickle that would run code is a UserError, not executed."""
    import pickle

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    bad.write_bytes(pickle.dumps({"x": Boom()}, protocol=2))
    with pytest.raises(UserError, match="plain state dict"):
        ex.InceptionExtractor(weights_path=tmp_path)  # a folder holding the file is accepted too


@pytest.fixture(scope="module")
def fake_inception_weights(tmp_path_factory):
    """A randomly initialised state dict with the real file's layer names and shapes (the real one is 91 MB)."""
    pytest.importorskip("torch_fidelity")
    import torch_fidelity.feature_extractor_inceptionv3 as fe_mod

    mp = pytest.MonkeyPatch()
    mp.setattr(fe_mod, "load_state_dict_from_url", lambda *a, **k: {})
    mp.setattr(fe_mod.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
    try:
        model = fe_mod.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    finally:
        mp.undo()
    path = tmp_path_factory.mktemp("hub") / ex.INCEPTION_FILENAMES[0]
    torch.save(model.state_dict(), path)
    return path


def test_inception_extractor_with_local_weights(fake_inception_weights, monkeypatch):
    monkeypatch.setenv("GANFORGE_INCEPTION_WEIGHTS", str(fake_inception_weights))
    e = ex.get_extractor("inception-v3", "cpu", batch_size=2)
    assert isinstance(e, ex.FeatureExtractor) and e.weights_path == fake_inception_weights
    gray = torch.rand(3, 1, 32, 32) * 2 - 1
    out = e(gray)
    assert out["features"].shape == (3, 2048) and out["logits"].shape == (3, 1008)
    torch.testing.assert_close(e(gray.repeat(1, 3, 1, 1))["features"], out["features"])  # grey == 3 equal channels
    assert e(torch.rand(2, 1, 28, 40) * 2 - 1)["features"].shape == (2, 2048)  # non-square: resized to 299x299
    u8 = ex.InceptionExtractor.to_uint8_rgb(torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3))
    assert u8.dtype == torch.uint8 and u8.shape == (1, 3, 1, 3) and u8[0, 0, 0].tolist() == [0, 128, 255]


def test_torch_fidelity_fid_with_mnist_cnn(digits):
    torch_fidelity = pytest.importorskip("torch_fidelity")
    ex.register_torch_fidelity()
    ex.register_torch_fidelity()  # idempotent

    class U8(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = ((x + 1) * 127.5).round().to(torch.uint8)

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    x, _ = digits
    kw = dict(fid=True, feature_extractor="mnist-cnn", cuda=False, verbose=False, save_cpu_ram=True, batch_size=100)
    same = torch_fidelity.calculate_metrics(input1=U8(x[:200]), input2=U8(x[:200]), **kw)
    other = torch_fidelity.calculate_metrics(input1=U8(x[:200]), input2=U8(x[200:400].flip(-1)), **kw)
    assert abs(same["frechet_inception_distance"]) < 1e-3  # torch-fidelity's key, whatever the extractor
    assert other["frechet_inception_distance"] > 1.0
