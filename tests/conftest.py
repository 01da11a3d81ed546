"""Shared fixtures: tiny configs that train in a second or two on a CPU."""
from __future__ import annotations

import os

import pytest
import torch

from ganforge.config import RunConfig, validate

# one thread: the tiny models here are dominated by threading overhead, and CI may share its cores
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


def tiny_config(family: str = "dcgan", **train_kw) -> RunConfig:
    """A few-second run on 256 embedded MNIST digits at 16x16."""
    model = {"family": family, "image_size": 16, "channels": 1, "z_dim": 16, "g_width": 8, "d_width": 8}
    if family == "mlp":
        model.update(g_width=16, d_width=16, dropout=0.0)
    train = {"steps": 6, "epochs": None, "batch_size": 32, "log_every": 2, "n_fixed": 16, "seed": 3, "threads": 1}
    train.update(train_kw)
    return validate({"name": f"tiny-{family}", "model": model, "data": {"spec": "mnist-embedded", "limit": 256},
                     "train": train})


@pytest.fixture
def tiny():
    return tiny_config
