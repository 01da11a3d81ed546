"""train.batch_per_device (issue 26): gradient accumulation keeps the global batch and equals the unaccumulated
step for families without batch statistics; with BatchNorm it differs, as documented."""
from __future__ import annotations

import pytest
import torch

from ganforge.checkpoint import load_latest
from ganforge.errors import UserError
from ganforge.train import train

quiet = dict(progress=False, log=lambda s: None)


def _weights(run):
    return load_latest(run / "checkpoints").weights


def _with_model(cfg, **model_kw):
    return cfg.model_copy(update={"model": cfg.model.model_copy(update=model_kw)})


@pytest.mark.parametrize("family, model_kw", [("mlp", {"batch_norm": False}), ("dcgan", {"batch_norm": False})])
def test_accumulated_micro_batches_equal_the_whole_batch(tmp_path, tiny, family, model_kw):
    whole = _with_model(tiny(family, steps=6, batch_size=32), **model_kw)
    micro = _with_model(tiny(family, steps=6, batch_size=32, batch_per_device=8), **model_kw)  # 4 micro-batches
    train(whole, tmp_path / "whole", **quiet)
    train(micro, tmp_path / "micro", **quiet)
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "micro")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-6, rtol=1e-5, msg=lambda m: f"{k}: {m}")


def test_batchnorm_sees_the_micro_batch_and_differs(tmp_path, tiny):
    train(tiny("dcgan", steps=3, batch_size=32), tmp_path / "whole", **quiet)
    train(tiny("dcgan", steps=3, batch_size=32, batch_per_device=8), tmp_path / "micro", **quiet)
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "micro")
    assert any(not torch.allclose(a[k], b[k], atol=1e-4) for k in a if a[k].is_floating_point())


def test_a_batch_per_device_that_does_not_split_the_batch_is_refused(tmp_path, tiny):
    with pytest.raises(UserError, match="batch_per_device=12"):
        train(tiny("mlp", steps=2, batch_size=32, batch_per_device=12), tmp_path / "run", **quiet)
    assert not (tmp_path / "run").exists()
