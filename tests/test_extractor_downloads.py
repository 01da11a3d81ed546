"""Weights fetched once into torch's hub cache with their SHA-256 checked: faked with file:// URLs, no network."""
from __future__ import annotations

import hashlib
import urllib.request

import numpy as np
import pytest
import torch

from ganforge.errors import UserError
from ganforge.metrics import extractors as ex
from ganforge.metrics.extractors import _fetch, inception, vit_dinov2

TINY_ARCH = {"dim": 32, "depth": 2, "heads": 2, "patch": 14}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    monkeypatch.delenv("GANFORGE_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("GANFORGE_DINOV2_WEIGHTS", raising=False)
    monkeypatch.setenv("GANFORGE_OFFLINE", "0")
    return tmp_path / "torch" / "hub" / "checkpoints"


def published(tmp_path, payload: bytes, name: str, what: str = "Test net", sha: str | None = None):
    src = tmp_path / "server" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(payload)
    return _fetch.WeightsFile(what, src.as_uri(), name, sha or hashlib.sha256(payload).hexdigest(), "~1 KB")


def no_network(*a, **k):
    raise AssertionError("downloaded again")


def test_inception_downloads_once_into_the_hub_cache(tmp_path, hub, monkeypatch, capsys):
    payload = bytes(range(256)) * 40
    monkeypatch.setattr(inception, "INCEPTION_FILE", published(tmp_path, payload, ex.INCEPTION_FILENAMES[0]))
    path = ex.resolve_inception_weights()
    assert path == hub / ex.INCEPTION_FILENAMES[0] and path.read_bytes() == payload
    assert not list(hub.glob("*.part"))
    assert ex.INCEPTION_FILENAMES[0] in capsys.readouterr().err  # tqdm's progress bar names the file
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert ex.resolve_inception_weights() == path  # found in the cache: no second download


def test_a_wrong_hash_deletes_the_file_and_is_one_line(tmp_path, hub, monkeypatch):
    bad = published(tmp_path, b"tampered" * 100, ex.INCEPTION_FILENAMES[0], sha=inception.INCEPTION_SHA256)
    monkeypatch.setattr(inception, "INCEPTION_FILE", bad)
    with pytest.raises(UserError) as err:
        ex.resolve_inception_weights()
    msg = str(err.value)
    assert "\n" not in msg and "SHA-256" in msg and "deleted" in msg and "--inception-weights" in msg
    assert not hub.exists() or not any(hub.iterdir())  # neither the file nor a partial one is left


def test_offline_and_network_failure_say_how_to_fix(tmp_path, hub, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        ex.resolve_inception_weights()
    msg = str(err.value)
    assert "\n" not in msg and "GANFORGE_OFFLINE" in msg and ex.INCEPTION_URL in msg and "--inception-weights" in msg
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    with pytest.raises(UserError, match="GANFORGE_OFFLINE forbids"):
        vit_dinov2.resolve_dinov2_weights()
    monkeypatch.undo()


def test_a_failed_download_is_one_line(tmp_path, hub, monkeypatch):
    gone = _fetch.WeightsFile("Test net", (tmp_path / "nowhere.pth").as_uri(), "net.pth", "0" * 64)
    with pytest.raises(UserError) as err:
        _fetch.download(gone, "pass --extractor-weights PATH")
    assert "\n" not in str(err.value) and "could not download" in str(err.value)
    assert not (hub / "net.pth").exists() and not (hub / "net.pth.part").exists()


def test_the_published_hashes_are_full_sha256():
    for spec in (inception.INCEPTION_FILE, vit_dinov2.DINOV2_B14):
        assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0
    assert inception.INCEPTION_SHA256.startswith("6726825d")  # torch hub's convention: the name's 8 digits


def test_dinov2_downloads_and_extracts(tmp_path, hub, monkeypatch):
    monkeypatch.setattr(vit_dinov2, "ARCH_B14", TINY_ARCH)
    torch.manual_seed(0)
    net = vit_dinov2.DinoViT(**TINY_ARCH, grid=37)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    src = tmp_path / "dinov2.pth"
    torch.save(net.state_dict(), src)
    monkeypatch.setattr(vit_dinov2, "DINOV2_B14", published(tmp_path, src.read_bytes(), "dinov2_vitb14_pretrain.pth"))
    e = ex.get_extractor("dinov2-vit-b-14", "cpu", batch_size=3)
    assert e.weights_path == hub / "dinov2_vitb14_pretrain.pth"
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    f = e(x)["features"]
    assert f.shape == (5, 32) and torch.isfinite(f).all()
    assert torch.allclose(f, e(x)["features"]) and e(x[:, :1])["features"].shape == (5, 32)
    # the 224 px input makes a 16x16 grid: the 37x37 position table is interpolated to it
    assert net._positions(16, 16).shape == (1, 257, 32) and net._positions(37, 37) is not None
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert ex.get_extractor("dinov2-vit-b-14", "cpu").weights_path == e.weights_path


def test_evaluate_with_a_wrong_hash_exits_2(tmp_path, hub, monkeypatch):
    from typer.testing import CliRunner

    from ganforge.cli import app

    samples = tmp_path / "s.npz"
    np.savez(samples, np.zeros((4, 32, 32, 3), dtype=np.uint8))
    monkeypatch.setattr(inception, "INCEPTION_FILE",
                        published(tmp_path, b"x" * 999, ex.INCEPTION_FILENAMES[0], sha=inception.INCEPTION_SHA256))
    res = CliRunner().invoke(app, ["evaluate", str(samples), "--ref", f"folder:{tmp_path}", "--extractor",
                                   "inception-v3", "--metrics", "fid", "--n", "4"])
    # main() prints a UserError as one line and exits with its code
    assert isinstance(res.exception, UserError) and res.exception.exit_code == 2, res.output
    assert "SHA-256" in str(res.exception) and not any(hub.iterdir())
