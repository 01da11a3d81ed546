"""Shared fixtures: tiny configs that train in a second or two on a CPU."""
from __future__ import annotations

import os
import signal

import pytest
import torch

from ganforge.config import RunConfig, validate

# one thread: the tiny models here are dominated by threading overhead, and CI may share its cores
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")
# no test may reach the network: weights are never downloaded (tests of the download fake it with file:// URLs)
os.environ["GANFORGE_OFFLINE"] = "1"
# deterministic cuBLAS from the start of the process, before any test touches CUDA (see train/determinism.py)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

# Every test names its device: CPU, except the exact-resume tests, which hold GPU users' promise too and so run on
# CUDA whenever a GPU is present. Nothing may depend on what hardware the suite happens to find ("auto").
RESUME_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


# Every family, each with the preset the CLI tests start it from: the engine's promises (exact resume, NaN
# rollback, SIGKILL, two processes) are tested for each one, so a new family is covered by adding it here.
# "family-arch" names a family with a non-default ``model.arch`` (see ARCHS).
FAMILIES = {"mlp": "mnist-mlp", "dcgan": "dcgan-mnist", "cdcgan": "cdcgan-mnist", "ssgan": "ssgan-mnist",
            "ssgan-mlp": "ssgan-mnist", "pix2pix": "pix2pix-sr-digits", "cyclegan": "cyclegan-thin2thick",
            "stylegan": "stylegan-mnist", "progan": "progan-mnist", "r3gan": "r3gan-mnist"}
ARCHS = {"ssgan-mlp": {"family": "ssgan", "arch": "mlp"}}
TRANSLATION_DATA = {"pix2pix": "digits-sr", "cyclegan": "digits-thin2thick"}


def family_model(family: str) -> dict:
    """The model keys that select ``family`` (a FAMILIES key): its family name, and its arch where it has one."""
    return ARCHS.get(family, {"family": family})


def sigint_default() -> None:
    """``preexec_fn`` of a child that a test interrupts: a background job (a CI runner, ``cmd &``) starts with
    SIGINT ignored, which Python would keep, and Ctrl-C would then not reach the child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def tiny_config(family: str = "dcgan", guard: dict | None = None, **train_kw) -> RunConfig:
    """A few-second run on 256 embedded MNIST digits at 16x16, on the CPU unless ``device`` says otherwise.

    The class-fade watch is off unless ``guard`` turns it on: a run of a few dozen steps draws noise, which the
    digit classifier puts in one or two classes, so the watch would rightly flag it in every test."""
    model = {"family": family, "image_size": 16, "channels": 1, "z_dim": 16, "g_width": 8, "d_width": 8,
             **family_model(family)}
    family = model["family"]
    data = {"spec": "mnist-embedded", "limit": 256}
    if family == "mlp":
        model.update(g_width=16, d_width=16, dropout=0.0)
    if family == "ssgan":
        data.update(split="train", labeled=20)
    if family in TRANSLATION_DATA:
        data.update(spec=TRANSLATION_DATA[family], split="train")
        model.update(d_layers=1, **({"g_blocks": 2} if family == "cyclegan" else {}))
    train = {"steps": 6, "epochs": None, "batch_size": 32, "log_every": 2, "n_fixed": 16, "seed": 3, "threads": 1,
             "device": "cpu"}
    if family == "stylegan":  # small styles; both lazy regularisers on, so resume and rollback cover Greg and Dreg
        model.update(w_dim=16, max_channels=32, pl_weight=2.0, pl_every=2)
        train.update(r1_gamma=1.0, r1_every=3)
    if family == "progan":  # 4 -> 8 -> 16: a growth by step 1, the fade-in to 16 (batch 16) over steps 4-7
        model.update(max_channels=16, fade_images=64, stable_images=32, batch_sizes={16: 16})
        train.update(loss="wgan-gp", lr_g=1e-3, lr_d=1e-3, beta1=0.0, beta2=0.99)
    train.update(train_kw)
    # eval.final (on by default) is tested on its own, in test_evaluate: here it would only add seconds per run
    return validate({"name": f"tiny-{family}", "model": model, "data": data, "train": train,
                     "eval": {"final": False}, "guard": {"class_samples": 0, **(guard or {})}})


@pytest.fixture
def tiny():
    return tiny_config


def _assert_same_run(straight, resumed) -> None:
    """Two run directories ended in the same state: every checkpoint tensor (G, D, EMA, optimizer moments and
    steps, RNG states) ``torch.equal``, and the same ``metrics.jsonl`` but for timings."""
    import json

    from ganforge.checkpoint import load_latest

    def tensors(run):
        ck = load_latest(run / "checkpoints")
        return {**ck.weights, **ck.optim}

    a, b = tensors(straight), tensors(resumed)
    assert a.keys() == b.keys() and any(k.startswith("opt_g.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k

    def lines(run):
        return [{k: v for k, v in json.loads(l).items() if k not in ("img_s", "time")}
                for l in (run / "metrics.jsonl").read_text().splitlines()]

    assert lines(straight) == lines(resumed)


@pytest.fixture
def resume_device() -> str:
    return RESUME_DEVICE


@pytest.fixture(autouse=True)
def no_automatic_device(monkeypatch):
    """Fail a test that leaves the device to 'auto': it would pass on one machine and fail on another."""
    import sys

    import ganforge.bench.throughput  # noqa: F401  (modules that import pick_device by name)
    import ganforge.apps.sampling  # noqa: F401
    import ganforge.devices as devices
    import ganforge.train.distributed  # noqa: F401

    pick = devices.pick_device

    def explicit_only(name: str = "auto"):
        if name == "auto":
            raise AssertionError("a test must name its device (train.device / --device): 'auto' depends on the "
                                 "machine")
        return pick(name)

    for mod in [m for name, m in sys.modules.items() if name.startswith("ganforge")]:
        if getattr(mod, "pick_device", None) is pick:
            monkeypatch.setattr(mod, "pick_device", explicit_only)


@pytest.fixture
def assert_same_run():
    return _assert_same_run
