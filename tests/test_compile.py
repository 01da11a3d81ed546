"""train.compile: compiled networks train like eager ones (same names in checkpoints, losses within float
tolerance), and a compiler that fails, or a machine without one, leaves the run eager and says why."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from ganforge.checkpoint import load_latest
from ganforge.train import compiling, train

CPU = torch.device("cpu")


def _losses(run) -> list[float]:
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    return [v for r in lines if "loss_g" in r for v in (r["loss_d"], r["loss_g"])]


@pytest.mark.skipif(compiling.unsupported(CPU) is not None, reason="no C++ compiler for inductor on this machine")
def test_compiled_dcgan_trains_like_the_eager_one(tmp_path, tiny):
    logs: list[str] = []
    eager = train(tiny("dcgan", steps=4), tmp_path / "eager", progress=False, log=lambda s: None)
    compiled = train(tiny("dcgan", steps=4, compile="default"), tmp_path / "compiled", progress=False,
                     log=logs.append)
    assert any("torch.compile: G, D compiled" in line for line in logs)
    assert _losses(tmp_path / "compiled") == pytest.approx(_losses(tmp_path / "eager"), rel=1e-3, abs=1e-4)
    a, b = load_latest(tmp_path / "eager" / "checkpoints"), load_latest(tmp_path / "compiled" / "checkpoints")
    assert set(a.weights) == set(b.weights)  # compiled in place: the checkpoint names are the eager ones
    assert eager.steps == compiled.steps == 4


def test_a_failing_compiler_leaves_the_run_eager_and_exact(tmp_path, tiny, monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("no backend today")

    monkeypatch.setattr(torch.nn.Module, "compile", broken)
    monkeypatch.setattr(compiling, "unsupported", lambda device: None)
    logs: list[str] = []
    train(tiny("dcgan", steps=3), tmp_path / "eager", progress=False, log=lambda s: None)
    train(tiny("dcgan", steps=3, compile="default"), tmp_path / "asked", progress=False, log=logs.append)
    assert any("train.compile=default is not used" in line and "no backend today" in line for line in logs)
    assert _losses(tmp_path / "asked") == _losses(tmp_path / "eager")  # the probe drew no training randomness


def test_no_cpp_compiler_is_named(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "C++ compiler" in compiling.unsupported(CPU)
    assert compiling.unsupported(torch.device("cuda")) is None


def test_compile_words_survive_yaml():
    from ganforge.config import load_config

    assert load_config("dcgan-mnist", ["train.compile=off"]).train.compile == "off"  # YAML reads it as False
    assert load_config("dcgan-mnist", ["train.compile=default"]).train.compile == "default"
