"""Training really learns, writes its run directory, round-trips through checkpoints and resumes exactly."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge.data.folder as folder_data
import ganforge.train.batches as batches

from ganforge.checkpoint import flatten_modules, list_checkpoints, load_latest, save_checkpoint
from ganforge.config import validate
from ganforge.data import mode_centers
from ganforge.errors import UserError
from ganforge.families import build_models
from ganforge.apps.sampling import load_generator
from ganforge.train import train
from conftest import FAMILIES

quiet = dict(progress=False, log=lambda s: None)


def ring_config(seed: int):
    return validate({
        "name": "ring",
        "model": {"family": "mlp", "point_dim": 2, "z_dim": 8, "g_width": 64, "d_width": 32, "dropout": 0.0,
                  "batch_norm": False},
        "data": {"spec": "ring8"},
        "train": {"steps": 1500, "epochs": None, "batch_size": 256, "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.5,
                  "seed": seed, "log_every": 100, "sample_every": 100, "threads": 1, "device": "cpu"},
    })


def test_mlp_gan_covers_the_modes_of_a_ring_of_8_gaussians(tmp_path):
    train(ring_config(seed=1), tmp_path / "ring", **quiet)
    x = load_generator(tmp_path / "ring").sample(2000, seed=0)
    assert x.shape == (2000, 2)
    dist = torch.cdist(x, mode_centers("ring8"))
    nearest, near = dist.argmin(1), dist.min(1).values
    # a mode is covered when >= 2% of samples sit within 0.25 of it (neighbouring modes are 1.53 apart)
    covered = [k for k in range(8) if ((nearest == k) & (near < 0.25)).float().mean() >= 0.02]
    assert len(covered) >= 6, f"covered modes {covered}"


RUN_FILES = ["config.yaml", "metrics.jsonl", "progress.gif", "losses.png", "real_vs_fake.png", "checkpoints/latest"]


def test_run_directory_holds_every_artifact(tmp_path, tiny):
    run = tmp_path / "run"
    summary = train(tiny("dcgan", steps=16), run, **quiet)  # 256 images / 32 = 8 steps per epoch: 2 epochs
    assert summary.steps == 16
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    grids = sorted((run / "samples").glob("*.png"))
    assert len(grids) >= 3  # untrained, epoch 1, epoch 2
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 8, 10, 12, 14, 16]
    for key in ("loss_d", "loss_g", "d_real", "d_fake", "lr_g", "lr_d", "img_s"):
        assert all(isinstance(r[key], float) for r in records), key
    assert all(0 <= r["d_real"] <= 1 and 0 <= r["d_fake"] <= 1 for r in records)
    saved = validate(__import__("yaml").safe_load((run / "config.yaml").read_text()))
    assert saved == tiny("dcgan", steps=16)


def test_real_vs_fake_shows_as_many_real_images_as_fakes(tmp_path, tiny, monkeypatch):
    from ganforge import viz

    shown = {}
    monkeypatch.setattr(viz, "save_real_vs_fake", lambda real, fake, path: shown.update(real=len(real), fake=len(fake)))
    train(tiny("dcgan", steps=2, n_fixed=16), tmp_path / "run", **quiet)
    assert shown == {"real": 16, "fake": 16}


def test_fixed_latents_give_the_same_grid_as_sampling_them(tmp_path, tiny):
    run = tmp_path / "run"
    train(tiny("dcgan", steps=8), run, **quiet)
    ckpt = load_latest(run / "checkpoints")
    g = load_generator(run)
    a = g.sample(16, z=ckpt.weights["fixed.z"])
    b = g.sample(16, z=ckpt.weights["fixed.z"])
    assert torch.equal(a, b)


def test_save_load_sample_round_trip_is_identical(tmp_path, tiny):
    cfg = tiny("dcgan")
    G, _ = build_models(cfg.model)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # not the init: prove the weights themselves travel
    path = save_checkpoint(tmp_path / "ck", epoch=0, step=1, weights=flatten_modules({"G": G.state_dict()}), optim={},
                           state={"config": cfg.model_dump(mode="json"), "optimizers": {}, "rng": {}, "position": 0})
    z = torch.randn(5, cfg.model.z_dim)
    expected = G.eval()(z)
    loaded = load_generator(tmp_path, checkpoint=path)
    assert torch.equal(loaded.sample(5, z=z), expected.clamp(-1, 1))
    assert torch.equal(loaded.sample(5, seed=7), loaded.sample(5, seed=7))
    assert not torch.equal(loaded.sample(5, seed=7), loaded.sample(5, seed=8))


@pytest.mark.parametrize("family, stop_at", [(f, 5) for f in FAMILIES] + [("dcgan", 8)])  # mid-epoch; epoch end
def test_resume_continues_exactly_where_it_stopped(tmp_path, tiny, family, stop_at, assert_same_run, resume_device):
    cfg = tiny(family, steps=12, ema={"enabled": True, "decay": 0.9}, device=resume_device)
    train(cfg, tmp_path / "straight", **quiet)
    train(cfg, tmp_path / "resumed", stop_after_steps=stop_at, **quiet)
    stopped = load_latest(tmp_path / "resumed" / "checkpoints")
    assert stopped.state["step"] == stop_at
    summary = train(cfg, tmp_path / "resumed", resume=True, **quiet)
    assert summary.steps == 12
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def _png_folder(folder, n=40, size=16):
    """``n`` distinct grey PNGs (random blobs on black), a small on-disk set read through the DataLoader."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.zeros((size, size), np.uint8)
        y, x = rng.integers(2, size - 6, 2)
        img[y:y + 5, x:x + 5] = rng.integers(128, 256, (5, 5))
        Image.fromarray(img, "L").save(folder / f"{i:02d}.png")
    return folder


def test_a_small_folder_resumes_exactly_from_memory(tmp_path, tiny, assert_same_run, resume_device):
    folder = _png_folder(tmp_path / "pngs")
    cfg = tiny("dcgan", steps=12, batch_size=8, device=resume_device)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"spec": f"folder:{folder}", "limit": None})})
    train(cfg, tmp_path / "straight", **quiet)
    train(cfg, tmp_path / "resumed", stop_after_steps=7, **quiet)
    assert train(cfg, tmp_path / "resumed", resume=True, **quiet).steps == 12
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_exact_on_a_folder_read_by_dataloader_workers(tmp_path, tiny, monkeypatch, workers,
                                                                  assert_same_run, resume_device):
    folder = _png_folder(tmp_path / "pngs")
    cfg = tiny("dcgan", steps=12, batch_size=8, ema={"enabled": True, "decay": 0.9}, device=resume_device)  # 40 / 8: 5 steps an epoch
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"spec": f"folder:{folder}", "limit": None,
                                                                      "num_workers": workers})})
    made = []  # the num_workers of every DataLoader the batch source builds: proves the folder goes through one

    class Recording(batches.DataLoader):
        def __init__(self, *args, **kw):
            made.append(kw.get("num_workers", 0))
            super().__init__(*args, **kw)

    monkeypatch.setattr(batches, "DataLoader", Recording)
    monkeypatch.setattr(folder_data, "CACHE_MAX_BYTES", 0)  # as a folder too big to keep decoded in memory
    train(cfg, tmp_path / "straight", **quiet)
    assert made and set(made) == {workers}
    train(cfg, tmp_path / "resumed", stop_after_steps=7, **quiet)  # epoch 1, batch 2 of 5
    assert load_latest(tmp_path / "resumed" / "checkpoints").state["position"] == 2
    assert train(cfg, tmp_path / "resumed", resume=True, **quiet).steps == 12
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def test_conditional_run_samples_by_label(tmp_path, tiny):
    run = tmp_path / "cond"
    train(tiny("cdcgan", steps=4), run, **quiet)
    g = load_generator(run)
    assert g.num_classes == 10
    x = g.sample(6, labels=[3, 4])
    assert x.shape == (6, 1, 16, 16)
    with pytest.raises(UserError, match="out of range"):
        g.sample(2, labels=[10])


def test_mlp_images_train(tmp_path, tiny):
    run = tmp_path / "mlp"
    train(tiny("mlp", steps=4), run, **quiet)
    assert load_generator(run).sample(3).shape == (3, 1, 16, 16)


def test_existing_run_directory_is_not_overwritten(tmp_path, tiny):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="--resume"):
        train(tiny("dcgan"), run, **quiet)
    assert sorted(p.name for p in run.iterdir()) == ["keep.txt"]


def test_checkpoints_are_pruned_to_keep(tmp_path, tiny):
    run = tmp_path / "run"
    train(tiny("dcgan", steps=40, keep_checkpoints=2), run, **quiet)  # 5 epochs -> 5 checkpoints written
    assert len(list_checkpoints(run / "checkpoints")) == 2
