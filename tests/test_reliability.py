"""Runs never lose work: NaN guards and rollback, signals, SIGKILL, corrupt checkpoints, no pickle, fingerprints."""
from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ganforge.train.engine as engine
from conftest import FAMILIES
from ganforge.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, load_latest
from ganforge.errors import UserError
from ganforge.train import train
import ganforge.metrics.extractors.mnist_cnn as extractors
import ganforge.train.loop as loop
from ganforge.config import validate
from ganforge.data import embedded, stacked
from ganforge.train.diversity import choose_space
from ganforge.train.guards import ClassShares, CollapseWatch, sample_diversity

quiet = dict(progress=False, log=lambda s: None)


def events(run: Path) -> list[dict]:
    recs = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in recs if "event" in r]


def poison_g_loss(monkeypatch, bad_calls: set[int]):
    """Make the generator's loss NaN on the given updates (0-based), whatever the family computes it from."""
    real = engine.Updater.update
    calls = {"n": 0}

    def update(self, optimizer, loss):
        if optimizer == "G":
            if calls["n"] in bad_calls:
                loss = loss * float("nan")
            calls["n"] += 1
        return real(self, optimizer, loss)

    monkeypatch.setattr(engine.Updater, "update", update)
    return calls


def test_a_nan_loss_skips_the_update_and_never_reaches_the_weights(tmp_path, tiny, monkeypatch):
    poison_g_loss(monkeypatch, {2, 5})
    run = tmp_path / "run"
    train(tiny("dcgan", steps=8), run, **quiet)
    ck = load_latest(run / "checkpoints")
    assert all(torch.isfinite(v).all() for v in ck.weights.values() if v.is_floating_point())
    recs = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum(r.get("skipped", 0) for r in recs if "loss_d" in r) > 0
    assert not events(run)  # isolated NaNs are skipped quietly, no rollback


@pytest.mark.parametrize("family", FAMILIES)
def test_repeated_nans_roll_back_with_a_lower_learning_rate(tmp_path, tiny, monkeypatch, family):
    poison_g_loss(monkeypatch, set(range(10, 13)))  # 3 in a row from the 11th G step
    run = tmp_path / "run"
    cfg = tiny(family, steps=16)
    cfg = cfg.model_copy(update={"guard": cfg.guard.model_copy(update={"max_skips": 3})})
    summary = train(cfg, run, **quiet)
    assert summary.steps == 16 and summary.stopped is None
    rollbacks = [e for e in events(run) if e["event"] == "rollback"]
    assert len(rollbacks) == 1 and "x0.5" in rollbacks[0]["message"]
    ck = load_latest(run / "checkpoints")
    base = cfg.model.lr[0] if cfg.model.family == "r3gan" else cfg.train.lr_g  # r3gan: its schedule's start
    # the base rate halved (a scheduled rate is the schedule's value times the base's share)
    assert ck.state["optimizers"]["opt_g"]["param_groups"][0]["initial_lr"] == pytest.approx(base * 0.5)


def test_endless_nans_stop_after_max_rollbacks(tmp_path, tiny, monkeypatch):
    poison_g_loss(monkeypatch, set(range(4, 10_000)))
    run = tmp_path / "run"
    cfg = tiny("dcgan", steps=40)
    cfg = cfg.model_copy(update={"guard": cfg.guard.model_copy(update={"max_skips": 2, "max_rollbacks": 2})})
    summary = train(cfg, run, **quiet)
    assert summary.stopped == "diverged"
    kinds = [e["event"] for e in events(run)]
    assert kinds.count("rollback") == 2 and kinds[-1] == "stop"
    for p in list_checkpoints(run / "checkpoints"):  # no checkpoint ever holds a NaN
        ck = load_checkpoint(p)
        assert all(torch.isfinite(v).all() for v in ck.weights.values() if v.is_floating_point())


def test_collapse_watch_flags_domination_collapse_and_divergence():
    w = CollapseWatch(d_fake_floor=0.05, d_fake_windows=3, collapse_ratio=0.25)
    kinds = [e.kind for s in [0.3, 0.01, 0.01, 0.01, 0.01] for e in w.on_log(fake_score=s, g_loss=1.0)]
    assert kinds == ["d_domination"]  # reported once, after 3 windows
    varied = torch.randn(16, 1, 8, 8)
    assert not w.on_samples(sample_diversity(varied))
    same = varied[:1].repeat(16, 1, 1, 1) + 0.001 * torch.randn(16, 1, 8, 8)
    assert [e.kind for e in w.on_samples(sample_diversity(same))] == ["collapse"]
    for _ in range(12):
        w.on_log(g_loss=1.0)
    assert [e.kind for e in w.on_log(g_loss=50.0)] == ["divergence"]


def _one_digit(real: torch.Tensor, noise: float) -> torch.Tensor:
    """A collapsed generator's fixed-z samples: the first image 64 times, each with its own pixel noise."""
    g = torch.Generator().manual_seed(0)
    return (real[:1].expand_as(real) + noise * torch.randn(real.shape, generator=g)).clamp(-1, 1)


def test_digit_collapse_is_measured_in_the_classifier_feature_space(tiny):
    rng_before = torch.get_rng_state()
    space = choose_space("mnist-embedded", tiny("dcgan").model)
    assert space.name == "mnist-cnn"
    real = embedded.build(1, 32).tensor[:64]  # 64 varied digits, as the default preset draws them
    varied, collapsed = space.diversity(real), space.diversity(_one_digit(real, 0.05))
    assert torch.equal(torch.get_rng_state(), rng_before)  # building and running the classifier drew nothing
    assert varied > 10 * collapsed
    watch = CollapseWatch(collapse_ratio=0.25, space=space.name)
    assert not watch.on_samples(varied)
    [e] = watch.on_samples(collapsed)
    rec = e.record(40)
    assert rec["event"] == "collapse" and rec["space"] == "mnist-cnn" and rec["peak"] == pytest.approx(varied, rel=1e-4)
    # one digit under heavy pixel noise: still a collapse in feature space, hidden in pixel space
    noisy = _one_digit(real, 0.3)
    pixels = CollapseWatch(collapse_ratio=0.25)
    pixels.on_samples(sample_diversity(real))
    assert not pixels.on_samples(sample_diversity(noisy))
    assert space.diversity(noisy) < 0.25 * varied
    # Stacked MNIST: each channel read as its own digit, the three feature vectors side by side
    rgb = choose_space("stacked-mnist", tiny("dcgan").model.model_copy(update={"channels": 3}))
    triples = stacked.build(3, 32, limit=64).tensor
    assert rgb.name == "mnist-cnn" and rgb.features(triples).shape == (64, 3 * 128)
    assert rgb.diversity(triples) > 10 * rgb.diversity(_one_digit(triples, 0.05))


def test_collapse_space_falls_back_to_pixels_off_digits_or_without_the_classifier(tiny, tmp_path, monkeypatch):
    model = tiny("dcgan").model
    assert [choose_space(s, model).name for s in ("mnist", "fashion-mnist", "cifar10", f"folder:{tmp_path}")] == \
        ["mnist-cnn", "pixels", "pixels", "pixels"]
    ring = validate({"name": "r", "model": {"family": "mlp", "point_dim": 2}, "data": {"spec": "ring8"}})
    assert choose_space("ring8", ring.model).name == "points"
    monkeypatch.setattr(extractors, "_shipped_weights", lambda: tmp_path / "gone.safetensors")
    space = choose_space("mnist-embedded", model)
    assert space.name == "pixels" and "mnist-cnn unavailable" in space.describe()
    x = torch.randn(16, 1, 16, 16)
    assert space.diversity(x) == sample_diversity(x)


def test_a_collapsed_generator_is_flagged_in_metrics_with_its_space(tmp_path, tiny, monkeypatch):
    real_step = loop.run_step

    def collapse_after_12(trainer, updater, keys, batches, step):  # from step 12 on, G ignores z: one image
        out = real_step(trainer, updater, keys, batches, step)
        if step >= 11:
            with torch.no_grad():
                trainer.nets["G"].stem[0].weight.zero_()
        return out

    monkeypatch.setattr(loop, "run_step", collapse_after_12)
    lines = []
    train(tiny("dcgan", steps=24), tmp_path / "run", progress=False, log=lines.append)  # samples at steps 8, 16, 24
    assert [l for l in lines if l.startswith("collapse watch")] == [
        "collapse watch: fixed-z sample diversity in the mnist-cnn digit classifier's feature space"]
    [e] = events(tmp_path / "run")
    assert e["event"] == "collapse" and e["step"] == 16 and e["space"] == "mnist-cnn"
    assert e["diversity"] < 0.25 * e["peak"]


def test_label_spread_tells_a_generator_that_ignores_z_from_real_classes(tiny):
    space = choose_space("mnist-embedded", tiny("cdcgan").model)
    ds = embedded.build(1, 32)
    labels = torch.arange(60) % 10
    real = torch.stack([ds.tensor[ds.labels == k][j] for j, k in enumerate(labels.tolist())])
    per_label = torch.stack([ds.tensor[ds.labels == k][0] for k in labels.tolist()])  # one image per label
    watch = CollapseWatch(collapse_ratio=0.25, space=space.name)
    yardstick = space.label_spread(real, labels)
    assert not watch.on_label_spread(space.label_spread(real.flip(0), labels.flip(0)), yardstick)
    assert space.label_spread(per_label, labels) == 0.0 < yardstick
    [e] = watch.on_label_spread(space.label_spread(per_label, labels), yardstick)
    assert e.kind == "label_collapse" and "ignores z" in e.message


def test_a_conditional_generator_that_ignores_z_is_flagged(tmp_path, tiny, monkeypatch):
    real_step = loop.run_step

    def ignore_z(trainer, updater, keys, batches, step):  # G's z path gives a constant: one image per label
        out = real_step(trainer, updater, keys, batches, step)
        with torch.no_grad():
            trainer.nets["G"].z_stem[0].weight.zero_()
        return out

    monkeypatch.setattr(loop, "run_step", ignore_z)
    # 4 fixed samples per label; samples drawn at steps 8, 16 and 24
    train(tiny("cdcgan", steps=24, n_fixed=40), tmp_path / "run", progress=False, log=lambda s: None)
    found = [e for e in events(tmp_path / "run") if e["event"] == "label_collapse"]
    assert [e["step"] for e in found] == [8]  # reported once while it lasts, from a quarter of the budget on
    assert found[0]["space"] == "mnist-cnn" and found[0]["spread"] < 0.25 * found[0]["real_spread"]


def test_class_fade_is_one_event_per_class_until_it_recovers():
    watch = CollapseWatch(class_fade_share=0.25, space="mnist-cnn")
    balanced = ClassShares.of(torch.arange(500) % 10, 10)
    no_threes = ClassShares.of(torch.tensor([k for k in range(10) if k != 3] * 50 + [3] * 5), 10)  # 1.1%
    assert not watch.on_class_shares(balanced)
    [e] = watch.on_class_shares(no_threes)
    assert e.kind == "class_fade" and e.data["class"] == 3 and e.data["samples"] == 455 and "class 3 fades" in e.message
    assert not watch.on_class_shares(no_threes)  # reported once while it lasts
    assert not watch.on_class_shares(balanced) and len(watch.on_class_shares(no_threes)) == 1  # again after it cleared
    some_threes = ClassShares.of(torch.tensor([k for k in range(10) if k != 3] * 50 + [3] * 18), 10)  # 3.8%
    assert not watch.on_class_shares(some_threes) and not watch.on_class_shares(no_threes)  # 3.8% < 5%: not cleared
    assert no_threes.lowest() == (0, 3, 5 / 455) and balanced.kl() == pytest.approx(0.0)
    assert not CollapseWatch(class_fade_share=0.0).on_class_shares(no_threes)  # 0 turns it off
    # Stacked MNIST: one histogram per channel; a 7 missing from the green channel only is named with its channel
    triples = torch.stack([torch.arange(500) % 10, (torch.arange(500) % 9 + (torch.arange(500) % 9 >= 7)),
                           torch.arange(500) % 10], 1)
    [e] = CollapseWatch(space="mnist-cnn").on_class_shares(ClassShares.of(triples, 10))
    assert e.data["class"] == 7 and e.data["channel"] == 1 and "class 7 in channel 1" in e.message


class DigitsWithout(torch.nn.Module):
    """A stand-in generator: real 16x16 digits, chosen by z, never of class ``missing`` (None: every class)."""

    def __init__(self, missing: int | None):
        super().__init__()
        ds = embedded.build(1, 16)
        keep = ds.labels != (-1 if missing is None else missing)
        self.register_buffer("bank", ds.tensor[keep])

    def forward(self, z: torch.Tensor, *rest, **kw) -> torch.Tensor:
        idx = (z[:, 0].abs() * 10_000).long() % self.bank.shape[0]
        return self.bank[idx]


@pytest.mark.parametrize("missing", [7, None])
def test_a_generator_that_never_draws_one_digit_is_flagged_once(tmp_path, tiny, monkeypatch, missing):
    monkeypatch.setattr(loop.Run, "_sampler", lambda self: DigitsWithout(missing))
    lines = []
    # samples drawn at steps 8, 16 and 24; the check starts at a quarter of the budget
    train(tiny("dcgan", steps=24, guard={"class_samples": 400}), tmp_path / "run", progress=False, log=lines.append)
    assert any(l.startswith("class-fade watch: 400 samples classified by mnist-cnn") for l in lines)
    found = [e for e in events(tmp_path / "run") if e["event"] == "class_fade"]
    end = [l for l in lines if "classes at the end (mnist-cnn)" in l]
    if missing is None:
        assert not found and len(end) == 1 and not end[0].startswith("warning")
        return
    [e] = found
    assert e["step"] == 8 and e["class"] == 7 and e["share"] < 0.025 and e["samples"] == 400
    assert e["space"] == "mnist-cnn" and e["fair_share"] == 0.1
    assert len(end) == 1 and end[0].startswith("warning: classes at the end (mnist-cnn): rarest class 7")


def test_the_class_check_leaves_training_unchanged(tmp_path, tiny):
    """Its samples come from a seed of their own and StyleGAN's noise from a forked RNG: same weights, same RNG."""
    runs = {}
    for samples in (0, 300):  # a grid at step 8 (mid-run) and at the end
        runs[samples] = tmp_path / f"classes{samples}"
        train(tiny("stylegan", steps=10, guard={"class_samples": samples, "class_fade_from": 0.0}), runs[samples],
              **quiet)
    assert any(e["event"] == "class_fade" for e in events(runs[300]))  # it ran: a 10-step G draws noise
    a, b = (load_latest(r / "checkpoints") for r in runs.values())
    assert a.weights.keys() == b.weights.keys() and a.optim.keys() == b.optim.keys()
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
    assert all(torch.equal(a.optim[k], b.optim[k]) for k in a.optim)


def test_on_collapse_stop_ends_the_run_with_a_checkpoint(tmp_path, tiny):
    cfg = tiny("dcgan", steps=40, log_every=1)
    # an impossible floor makes the watch fire at once: D(G(z)) is always below 1.0
    cfg = cfg.model_copy(update={"guard": cfg.guard.model_copy(update={"on_collapse": "stop", "d_fake_floor": 0.999,
                                                                       "d_fake_windows": 2})})
    summary = train(cfg, tmp_path / "run", **quiet)
    assert summary.stopped == "d_domination" and summary.steps == 2
    assert load_latest(tmp_path / "run" / "checkpoints").state["step"] == 2


# ------------------------------------------------------------------------------------------- processes

def _cli(*args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "ganforge", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kw)


TINY = ["--set", "model.image_size=16", "--set", "model.g_width=8", "--set", "model.d_width=8", "--set",
        "model.z_dim=16", "--set", "data.limit=256", "--set", "train.threads=1", "--batch-size", "32", "--quiet",
        "--set", "train.log_every=1", "--device", "cpu"]


def _wait_for_step(run: Path, step: int, proc, timeout=120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        m = run / "metrics.jsonl"
        if m.is_file() and any(json.loads(l).get("step", 0) >= step for l in m.read_text().splitlines() if l.strip()):
            return
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        time.sleep(0.05)
    raise AssertionError("training did not reach the step in time")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_at_the_current_step_and_resume_continues(tmp_path, sig, code):
    run = tmp_path / "run"
    proc = _cli("train", "dcgan-mnist", "--steps", "100000", "--out", str(run), *TINY)
    _wait_for_step(run, 3, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "--resume" in err
    ck = load_latest(run / "checkpoints")
    stopped_at = ck.state["step"]
    logged = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert stopped_at == max(logged)  # the checkpoint is at the step the signal interrupted
    res = subprocess.run([sys.executable, "-m", "ganforge", "train", "--resume", str(run), "--steps",
                          str(stopped_at + 2), "--quiet"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    steps_after = [r["step"] for r in records if "event" not in r]  # a watch's warning may follow the last step
    assert steps_after[-2:] == [stopped_at + 1, stopped_at + 2]


@pytest.mark.parametrize("family", FAMILIES)
def test_sigkill_at_random_moments_always_leaves_a_loadable_checkpoint(tmp_path, family):
    run = tmp_path / "run"
    rng = random.Random(0)
    kills = 0
    n_kills = 8 if family == "dcgan" else 3  # the others take fewer: the same code writes every family's checkpoints
    # checkpoint every epoch of 8 steps: kills land before, during and after checkpoint writes
    args = ["--steps", "100000", *TINY, "--set", "train.keep_checkpoints=2"]
    proc = _cli("train", FAMILIES[family], "--out", str(run), *args)
    _wait_for_step(run, 1, proc)
    for i in range(n_kills):
        time.sleep(rng.uniform(0.0, 1.5))
        proc.kill()
        proc.wait()
        kills += 1
        ck = load_latest(run / "checkpoints", warn=lambda s: None)  # must never raise
        assert ck.state["step"] >= 0
        assert not list((run / "checkpoints").glob(".tmp-*")) or True  # leftovers are pruned on the next save
        proc = _cli("train", "--resume", str(run), "--steps", "100000", "--quiet")
        time.sleep(0.5)
    proc.kill()
    proc.wait()
    assert kills == n_kills
    assert load_latest(run / "checkpoints", warn=lambda s: None)


def test_corrupt_latest_falls_back_to_the_previous_good_one(tmp_path, tiny):
    run = tmp_path / "run"
    train(tiny("dcgan", steps=16), run, **quiet)
    newest, older = list_checkpoints(run / "checkpoints")[:2]
    w = newest / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(newest)
    warnings = []
    ck = load_latest(run / "checkpoints", warn=warnings.append)
    assert ck.path == older and "corrupt" in warnings[0]
    (older / "state.json").write_text((older / "state.json").read_text()[:50])  # truncated
    with pytest.raises(CheckpointError):
        load_checkpoint(older)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('GANFORGE_PWNED', '/tmp/ganforge-pwned')}",))


def test_a_checkpoint_crafted_to_run_code_is_refused(tmp_path, tiny, monkeypatch):
    run = tmp_path / "run"
    train(tiny("dcgan", steps=8), run, **quiet)
    ck = list_checkpoints(run / "checkpoints")[0]
    marker = tmp_path / "pwned"
    monkeypatch.setenv("GANFORGE_PWNED", str(marker))
    payload = pickle.dumps(_Exploit())
    (ck / "weights.safetensors").write_bytes(payload)
    # even with a manifest that matches the payload, loading parses safetensors and never unpickles
    import hashlib
    man = json.loads((ck / "manifest.json").read_text())
    man["sha256"]["weights.safetensors"] = hashlib.sha256(payload).hexdigest()
    (ck / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(Exception):
        load_checkpoint(ck)
    assert not marker.exists()


def test_resume_refuses_a_changed_config_or_dataset_unless_forced(tmp_path, tiny):
    run = tmp_path / "run"
    cfg = tiny("dcgan", steps=8)
    train(cfg, run, **quiet)
    changed = cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr_g": 0.1, "steps": 12})})
    with pytest.raises(UserError, match=r"train\.lr_g: 0\.0002 -> 0\.1.*--force"):
        train(changed, run, resume=True, **quiet)
    other_data = cfg.model_copy(update={"data": cfg.data.model_copy(update={"limit": 200}),
                                        "train": cfg.train.model_copy(update={"steps": 12})})
    with pytest.raises(UserError, match="dataset"):
        train(other_data, run, resume=True, **quiet)
    assert train(changed, run, resume=True, force=True, **quiet).steps == 12
    longer = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 10})})
    assert train(longer, tmp_path / "fresh", **quiet).steps == 10  # a budget change alone is no change


def test_import_weights_needs_trust_and_round_trips(tmp_path, monkeypatch):
    from ganforge.config import load_config
    from ganforge.apps.importer import import_generator
    from ganforge.families import build_models
    from ganforge.apps.sampling import load_generator

    cfg = load_config("dcgan-mnist", ["model.g_width=8", "model.d_width=8", "model.z_dim=16"])
    G, _ = build_models(cfg.model)
    pt = tmp_path / "G.pth"
    torch.save({"netG": {f"module.{k}": v for k, v in G.state_dict().items()}}, pt)  # as DataParallel saves it
    with pytest.raises(UserError, match="--trust"):
        import_generator(pt, cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    import_generator(pt, cfg, tmp_path / "run", trust=True, key="netG")
    z = torch.randn(4, 16)
    assert torch.equal(load_generator(tmp_path / "run").sample(4, z=z), G.eval()(z).clamp(-1, 1))
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(_Exploit()))
    monkeypatch.setenv("GANFORGE_PWNED", str(marker))
    with pytest.raises(UserError, match="weights_only"):
        import_generator(evil, cfg, tmp_path / "run2", trust=True)
    assert not marker.exists()
