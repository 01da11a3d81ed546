"""The engine's families and the catalogue of losses and tricks, as a user switches them on."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ganforge import viz
from ganforge.config import load_config, load_run_config, validate
from ganforge.data import build_spec
from ganforge.errors import UserError
from ganforge.families.ssgan import labeled_indices, real_probability
from ganforge.train import fingerprint as fp
from ganforge.train import train

quiet = dict(progress=False, log=lambda s: None)


def _records(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


def test_k_plus_one_logits_give_the_documented_real_probability():
    logits = torch.tensor([[0.0, 0.0], [2.0, -1.0], [-30.0, -30.0]])
    z = logits.exp().sum(1)
    assert torch.allclose(real_probability(logits), z / (z + 1))  # fake logit fixed at 0: D = Z / (Z + 1)
    assert real_probability(logits)[2] < 1e-12 and real_probability(logits)[0] == pytest.approx(2 / 3)


def test_labelled_subset_is_balanced_fixed_by_the_seed_and_never_from_the_test_split():
    train_set = build_spec("mnist-embedded", channels=1, size=16, split="train")
    test_set = build_spec("mnist-embedded", channels=1, size=16, split="test")
    assert len(train_set) == 4000 and len(test_set) == 1000
    a = labeled_indices(train_set.labels, 100, 10, seed=0)
    assert torch.equal(a, labeled_indices(train_set.labels, 100, 10, seed=0))
    assert not torch.equal(a, labeled_indices(train_set.labels, 100, 10, seed=1))
    assert torch.bincount(train_set.labels[a], minlength=10).tolist() == [10] * 10
    picked = {bytes(x.numpy().tobytes()) for x in (train_set.tensor[a] * 127.5 + 127.5).round().to(torch.uint8)}
    held_out = {bytes(x.numpy().tobytes()) for x in (test_set.tensor * 127.5 + 127.5).round().to(torch.uint8)}
    assert not picked & held_out


def test_data_without_a_split_is_refused():
    with pytest.raises(UserError, match="no train/test split"):
        build_spec("ring8", split="test")


@pytest.fixture(scope="module")
def ssgan_run(tmp_path_factory):
    import sys as _sys
    from pathlib import Path

    _sys.path.insert(0, str(Path(__file__).parent))
    from conftest import tiny_config

    run = tmp_path_factory.mktemp("ssgan") / "run"
    cfg = tiny_config("ssgan", steps=60, lr_g=1e-3, lr_d=1e-3, g_objective="feature_matching")
    train(cfg, run, **quiet)
    return run


def test_ssgan_logs_its_own_stats_and_learns_from_its_labels(ssgan_run):
    recs = [r for r in _records(ssgan_run) if "loss_d" in r]
    assert {"loss_supervised", "train_accuracy", "d_real", "d_fake"} <= recs[-1].keys()
    assert recs[-1]["loss_supervised"] < recs[0]["loss_supervised"]  # the 20 labelled digits are being fitted


def test_classify_an_npz_with_labels_and_a_folder(ssgan_run, tmp_path):
    from ganforge.data.embedded import heldout_split, load_raw

    images, labels = load_raw()
    _, test = heldout_split()
    npz = tmp_path / "digits.npz"
    np.savez(npz, arr_0=images[test[:50], :, :, None], labels=labels[test[:50]])  # plain 28x28, like MNIST itself
    res = subprocess.run([sys.executable, "-m", "ganforge", "classify", str(ssgan_run), "--input", str(npz)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "50 images classified" in res.stdout and "accuracy" in res.stdout
    rows = (tmp_path / "digits.predictions.csv").read_text().splitlines()
    assert rows[0] == "index,input,predicted,confidence,label" and len(rows) == 51
    folder = tmp_path / "pngs"
    viz.save_image_folder(torch.from_numpy(images[:5]).float()[:, None] / 127.5 - 1, folder)
    res = subprocess.run([sys.executable, "-m", "ganforge", "classify", str(ssgan_run), "--input", str(folder),
                          "--out", str(tmp_path / "p.csv")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 6


def test_classify_refuses_bad_input_in_one_line(ssgan_run, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, arr_0=np.zeros((3, 28, 28), np.float32))
    for args in (["--input", str(bad)], ["--input", str(tmp_path / "missing")]):
        res = subprocess.run([sys.executable, "-m", "ganforge", "classify", str(ssgan_run), *args],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error: ")


def test_evaluate_reports_a_semi_supervised_runs_test_accuracy(ssgan_run, tmp_path, monkeypatch):
    from ganforge.apps.evaluate import evaluate

    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    res = evaluate(ssgan_run, "mnist-embedded", ["fid"], n=200)
    assert res["metrics"]["n_test"] == 1000 and 0.0 <= res["metrics"]["test_accuracy"] <= 1.0


@pytest.mark.parametrize("loss, extra", [
    ("wgan", {"d_steps": 2, "optimizer": "rmsprop"}),
    ("wgan-gp", {"d_steps": 2}),
    ("minimax", {}),
    ("lsgan", {"instance_noise": 0.1}),
    ("hinge", {"diffaugment": "color,translation,cutout"}),
    ("bce", {"r1_gamma": 1.0, "r1_every": 2, "g_objective": "feature_matching"}),
    ("bce", {"unrolled_steps": 2}),
])
def test_every_loss_and_trick_trains_and_logs_its_stats(tmp_path, tiny, loss, extra):
    run = tmp_path / "run"
    train(tiny("dcgan", steps=4, log_every=1, loss=loss, **extra), run, **quiet)
    recs = [r for r in _records(run) if "loss_d" in r]
    assert len(recs) == 4 and all(np.isfinite(r["loss_d"]) and np.isfinite(r["loss_g"]) for r in recs)
    if loss.startswith("wgan"):
        assert all("wasserstein" in r for r in recs)
    if loss == "wgan-gp":
        assert all(r["grad_norm"] > 0 and r["gp"] >= 0 for r in recs)
    if loss == "wgan":  # weight clipping: every critic weight within [-0.01, 0.01]
        from ganforge.checkpoint import load_latest

        d = [v for k, v in load_latest(run / "checkpoints").weights.items() if k.startswith("D.")
             and v.is_floating_point() and "running" not in k]
        assert max(t.abs().max().item() for t in d) <= 0.01 + 1e-7
    if "r1_every" in extra:  # lazy R1: only at even steps, its value logged there
        assert [("r1" in r) for r in recs] == [True, False, True, False]
    if "instance_noise" in extra:
        assert recs[0]["noise_sigma"] > recs[-1]["noise_sigma"] >= 0


@pytest.mark.parametrize("model", [{"spectral_norm": True, "d_batch_norm": False}, {"minibatch_std": True},
                                   {"minibatch_disc": 8}])
def test_discriminator_add_ons_train(tmp_path, tiny, model):
    cfg = tiny("dcgan", steps=3)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update=model)})
    assert train(validate(cfg.model_dump()), tmp_path / "run", **quiet).steps == 3


def test_unrolled_generator_step_leaves_the_discriminator_untouched(tmp_path, tiny):
    from ganforge.families import build_networks
    from ganforge.families.contract import RunContext
    from ganforge.families.noise_to_image import GanTrainer

    cfg = tiny("mlp", unrolled_steps=3)
    nets = build_networks(cfg.model)
    trainer = GanTrainer(cfg, nets, RunContext(torch.device("cpu"), total_steps=10))
    before = {k: v.clone() for k, v in nets["D"].state_dict().items()}
    nets["D"].requires_grad_(False)  # as the engine leaves D during the generator's phase
    batch = (torch.rand(32, 1, 16, 16) * 2 - 1, torch.zeros(32, dtype=torch.long))
    loss, _ = trainer.g_main(batch, 0)
    loss.backward()
    assert all(torch.equal(before[k], v) for k, v in nets["D"].state_dict().items())
    assert all(p.grad is None for p in nets["D"].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in nets["G"].parameters())
    plain = GanTrainer(cfg.model_copy(update={"train": cfg.train.model_copy(update={"unrolled_steps": 0})}), nets,
                       RunContext(torch.device("cpu"), total_steps=10))
    torch.manual_seed(0)
    looked_ahead = trainer.g_main(batch, 0)[0]
    torch.manual_seed(0)
    assert not torch.equal(looked_ahead, plain.g_main(batch, 0)[0])  # the unrolled D did move


def test_an_unknown_model_key_names_the_keys_of_that_family():
    with pytest.raises(UserError, match=r"model\.dropout: unknown key for family 'dcgan', which accepts: .*g_input"):
        load_config("dcgan-mnist", ["model.dropout=0.1"])
    with pytest.raises(UserError, match="unknown family 'gan9'"):
        load_config("dcgan-mnist", ["model.family=gan9"])


def test_run_directories_of_ganforge_0_1_still_load_and_resume(tmp_path):
    """0.1 wrote every key of one flat model config; the keys a family never read are dropped on load, and a
    checkpoint's fingerprint with them does not block resume."""
    old = {"name": "old", "model": {"family": "dcgan", "image_size": 32, "dropout": 0.3, "num_classes": 10,
                                    "point_dim": None, "pack": 1, "g_input": "convt"},
           "train": {"steps": 5, "epochs": None}}
    run = tmp_path / "run"
    run.mkdir()
    import yaml

    (run / "config.yaml").write_text(yaml.safe_dump(old))
    cfg = load_run_config(run)
    assert cfg.model.family == "dcgan" and not hasattr(cfg.model, "dropout")
    with pytest.raises(UserError, match="dropout"):  # a user's own YAML is still checked strictly
        validate(old)
    saved = {"config": {**fp.config_view(cfg), "model": {**fp.config_view(cfg)["model"], "dropout": 0.3}}}
    assert fp.mismatch({**saved, "data": "x"}, {"config": fp.config_view(cfg), "data": "x"}) == []
