"""train.deterministic: the kernel settings are applied for the run only, and cuBLAS is made deterministic first."""
from __future__ import annotations

import pytest
import torch

from ganforge.errors import UserError
from ganforge.train import determinism, train

quiet = dict(progress=False, log=lambda s: None)


def _flags():
    return (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark)


def test_kernels_apply_inside_and_restore_after():
    device = torch.device("cuda")  # the settings only concern GPU kernels; set and read without a GPU
    before = _flags()
    with determinism.kernels(True, device):
        assert _flags() == (True, True, False)
        assert torch.is_deterministic_algorithms_warn_only_enabled()  # an op without one is named, not fatal
    assert _flags() == before
    with determinism.kernels(False, device):
        assert _flags() == (False, False, True)  # off: cuDNN autotunes on GPUs
    assert _flags() == before


def test_cpu_runs_leave_the_settings_alone():
    """CPU kernels are deterministic already: no switch (whose first use imports torch._inductor, ~2 s)."""
    before = _flags()
    for deterministic in (True, False):
        with determinism.kernels(deterministic, torch.device("cpu")):
            assert _flags() == before


def test_cublas_workspace_is_set_or_a_bad_value_refused(monkeypatch):
    monkeypatch.delenv(determinism.CUBLAS_ENV, raising=False)
    determinism.check_cublas_workspace(lambda s: None)
    assert determinism.os.environ[determinism.CUBLAS_ENV] in determinism.CUBLAS_DETERMINISTIC
    monkeypatch.setenv(determinism.CUBLAS_ENV, ":0:0")
    with pytest.raises(UserError, match="CUBLAS_WORKSPACE_CONFIG=':0:0'.*:4096:8"):
        determinism.check_cublas_workspace(lambda s: None)


def test_a_run_leaves_the_process_settings_as_it_found_them(tmp_path, tiny, monkeypatch):
    before, seen = _flags(), []
    real = determinism.kernels

    def recording(deterministic, device):
        seen.append(deterministic)
        return real(deterministic, device)

    monkeypatch.setattr(determinism, "kernels", recording)
    train(tiny("dcgan", steps=2), tmp_path / "a", **quiet)
    train(tiny("dcgan", steps=2, deterministic=False), tmp_path / "b", **quiet)
    assert seen == [True, False] and _flags() == before
