"""``train.deterministic``: the same kernels every run, so that resume is bit-exact on GPUs too.

On CPU, PyTorch's kernels are deterministic already, so the switch leaves CPU runs alone. On CUDA, cuDNN's
autotuner and its fastest convolution algorithms, and cuBLAS's default workspaces, may sum in a different order from
one call to the next: a straight run and a resumed one then differ in the 7th significant digit after a few steps.
The switch selects deterministic cuDNN algorithms (no autotuning), turns on
``torch.use_deterministic_algorithms`` (in warn-only mode: an op with no deterministic implementation is named in
a warning rather than stopping the run, which is then reproducible only approximately), and gives cuBLAS a fixed
workspace (``CUBLAS_WORKSPACE_CONFIG``), which must be in place before cuBLAS first runs:
``check_cublas_workspace`` sets it, or refuses a value that breaks determinism.
With the switch off, cuDNN autotunes (``cudnn.benchmark``): fastest, not reproducible.
"""
from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator

import torch

from ganforge.errors import UserError

CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_DETERMINISTIC = (":4096:8", ":16:8")  # the two settings NVIDIA documents as deterministic


def check_cublas_workspace(log: Callable[[str], None]) -> None:
    """Make cuBLAS deterministic before training starts (called only for deterministic CUDA runs)."""
    value = os.environ.get(CUBLAS_ENV)
    if value is None:
        if torch.cuda.is_initialized():
            log(f"warning: CUDA was started before ganforge could set {CUBLAS_ENV}; for bit-exact runs start the "
                f"process with {CUBLAS_ENV}={CUBLAS_DETERMINISTIC[0]}")
        os.environ[CUBLAS_ENV] = CUBLAS_DETERMINISTIC[0]
    elif value not in CUBLAS_DETERMINISTIC:
        raise UserError(f"{CUBLAS_ENV}={value!r} makes cuBLAS non-deterministic under train.deterministic=true: "
                        f"unset it or use {' or '.join(CUBLAS_DETERMINISTIC)} (or --set train.deterministic=false)")


def _state() -> tuple[bool, bool, bool, bool, bool]:
    return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
            torch.utils.deterministic.fill_uninitialized_memory)


def _apply(state: tuple[bool, bool, bool, bool, bool]) -> None:
    algorithms, warn_only, cudnn_deterministic, cudnn_benchmark, fill = state
    torch.use_deterministic_algorithms(algorithms, warn_only=warn_only)
    torch.backends.cudnn.deterministic = cudnn_deterministic
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.utils.deterministic.fill_uninitialized_memory = fill


@contextlib.contextmanager
def kernels(deterministic: bool, device: torch.device) -> Iterator[None]:
    """Deterministic kernels (or autotuned ones) while the block runs; the process's settings are put back after,
    so a library caller or a test suite is not left with them. Call ``check_cublas_workspace`` first on CUDA."""
    if device.type == "cpu":  # CPU kernels are deterministic already; the switch would only cost start-up time
        yield                   # (torch.use_deterministic_algorithms imports torch._inductor: ~2 s)
        return
    before = _state()
    # deterministic kernels, without NaN-filling every torch.empty (that guards against reading uninitialised
    # memory, a bug ganforge does not have, and costs a pass over each new tensor)
    _apply((True, True, True, False, False) if deterministic
           else (False, False, False, device.type == "cuda", before[4]))
    try:
        yield
    finally:
        _apply(before)
