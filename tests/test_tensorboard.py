"""train.tensorboard: the run's scalars and sample grids land as event files in the run directory, the values
equal metrics.jsonl's; without the package the run refuses to start, writing nothing."""
from __future__ import annotations

import builtins
import json

import pytest

from ganforge.errors import UserError
from ganforge.train import train

quiet = dict(progress=False, log=lambda s: None)


def test_scalars_and_grids_match_the_run(tmp_path, tiny):
    pytest.importorskip("tensorboard", reason="the optional tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    train(tiny("dcgan", steps=4, tensorboard=True), run, **quiet)
    events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    logged = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["step"], r["loss_g"]) for r in logged if "loss_g" in r]
    assert [(e.step, e.value) for e in events.Scalars("train/loss_g")] == [(s, pytest.approx(v)) for s, v in losses]
    assert "train/img_s" in events.Tags()["scalars"] and "train/step" not in events.Tags()["scalars"]
    grids = events.Images("samples")
    assert [g.step for g in grids] == [0, 4] and grids[-1].width > 16  # the untrained grid and the final one


def test_without_tensorboard_the_run_refuses_before_writing(tmp_path, tiny, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(UserError, match=r"pip install 'ganforge\[tensorboard\]'"):
        train(tiny("dcgan", steps=2, tensorboard=True), tmp_path / "run", **quiet)
    assert not (tmp_path / "run").exists()
