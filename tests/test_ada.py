"""ADA (train.augment=ada): the pipeline's transforms one by one, its controller, the config keys, and exact resume
with ADA on in every noise-to-image family."""
from __future__ import annotations

import json

import pytest
import torch

from ganforge.checkpoint import list_checkpoints, load_checkpoint, load_latest
from ganforge.config import validate
from ganforge.errors import UserError
from ganforge.families.parts import ada
from ganforge.families.parts.ada import GROUPS, AdaController, apply_transforms, augment, parse_pipe
from ganforge.train import train
from conftest import tiny_config
from test_cli import _assert_user_error, run

quiet = dict(progress=False, log=lambda s: None)
GEOMETRIC = GROUPS["b"] + GROUPS["g"]
COLOUR = GROUPS["c"]
GREY_NOOPS = ("hue", "saturation")  # grey is their fixed point: no-ops on 1-channel images


def _images(channels: int, n: int = 16, size: int = 16) -> torch.Tensor:
    torch.manual_seed(1)
    return (torch.rand(n, channels, size, size) * 2 - 1).requires_grad_(True)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", GEOMETRIC + COLOUR)
def test_each_transform_alone_keeps_the_shape_lets_gradients_through_and_stays_in_range(name, channels):
    x = _images(channels)
    y = apply_transforms(x, 1.0, (name,))
    assert y.shape == x.shape and torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    if channels == 1 and name in GREY_NOOPS:
        assert torch.equal(y, x)
        return
    assert not torch.equal(y, x)  # it fired on at least one of the 16
    if name in GEOMETRIC:  # bilinear samples of the input: convex combinations of pixels in [-1, 1]
        assert y.abs().max() <= 1 + 1e-5
    else:  # colour is not clamped (as in the paper): brightness and contrast may go past [-1, 1], within reason
        assert y.abs().max() < 20


@pytest.mark.parametrize("name, share", [("scale", 0.3), ("rotate", 0.3), ("contrast", 0.3), ("xflip", 0.15)])
def test_a_transform_fires_on_about_p_of_the_samples(name, share):
    torch.manual_seed(0)
    x = torch.rand(4000, 3, 4, 4) * 2 - 1
    changed = (apply_transforms(x, 0.3, (name,)) != x).flatten(1).any(1).float().mean().item()
    assert changed == pytest.approx(share, abs=0.03)  # a flip fires on p, and then flips half the time


def test_pixel_blitting_copies_input_pixels_exactly():
    x = _images(3).detach()
    y = augment(x, 1.0, "b")
    for i in range(len(x)):
        assert torch.isin(y[i], x[i]).all()  # flips, quarter turns and integer shifts only move pixels


def test_p_zero_is_exactly_the_identity_and_skips_the_work():
    x = _images(3)
    assert augment(x, 0.0, "bgc") is x
    for pipe in ("b", "g", "c", "bgc"):
        assert torch.equal(augment(x, torch.zeros(()), pipe), x)


def test_luma_flip_negates_a_grey_image():
    x = _images(1).detach()
    y = apply_transforms(x, 1.0, ("lumaflip",))
    flipped = ~torch.isclose(y, x).flatten(1).all(1)
    assert flipped.any()
    assert torch.allclose(y[flipped], -x[flipped], atol=1e-6)


def test_a_rotation_about_the_grey_axis_keeps_grey_pixels_and_their_brightness():
    x = _images(3).detach()
    y = apply_transforms(x, 1.0, ("hue",))
    assert torch.allclose(y.mean(1), x.mean(1), atol=1e-5)  # the luma component is unchanged
    grey = x.mean(1, keepdim=True).expand_as(x)
    assert torch.allclose(apply_transforms(grey, 1.0, ("hue",)), grey, atol=1e-5)


def test_pipe_letters_select_the_papers_groups():
    assert parse_pipe("b") == GROUPS["b"]
    assert parse_pipe("bg") == GROUPS["b"] + GROUPS["g"]
    assert parse_pipe("cb") == GROUPS["b"] + GROUPS["c"]  # the paper's order whatever the letters'
    assert parse_pipe("bgc") == GEOMETRIC + COLOUR
    with pytest.raises(ValueError, match=r"'x'.*bgc"):
        parse_pipe("bxz")


def test_config_rejects_an_unknown_letter_naming_it_and_the_valid_ones():
    with pytest.raises(UserError, match=r"train\.ada_pipe.*'x'.*bgc"):
        tiny_config("dcgan", augment="ada", ada_pipe="bxz")
    with pytest.raises(UserError, match="choose one"):
        tiny_config("dcgan", augment="ada", diffaugment="color")
    assert tiny_config("dcgan", augment="ada", ada_pipe="bg").train.ada_pipe == "bg"
    with pytest.raises(UserError, match=r"train\.ada_p is set but ADA is off: add train\.augment=ada"):
        tiny_config("dcgan", ada_p=0.3)


def _controller(**kw) -> AdaController:
    args = dict(target=0.6, kimg=1.0, interval=2, fixed_p=None, device=torch.device("cpu"))
    return AdaController(**{**args, **kw})


def _steps(ctl: AdaController, logits: torch.Tensor, steps: int) -> None:
    for step in range(steps):
        ctl.begin_step(step)
        ctl.observe(logits)


def test_controller_raises_p_when_d_is_overconfident_on_reals():
    ctl = _controller()
    _steps(ctl, torch.full((32,), 3.0), 5)  # moves at steps 2 and 4, each by 64 images / 1000
    assert ctl.rt.item() == 1.0 and ctl.measured == 2
    assert ctl.p.item() == pytest.approx(2 * 64 / 1000)
    assert ctl.current_p is ctl.p  # the pipeline runs now


def test_controller_lowers_p_towards_zero_and_stops_there():
    ctl = _controller()
    _steps(ctl, torch.full((32,), 3.0), 5)
    _steps(ctl, torch.full((32,), -1.0), 30)
    assert ctl.rt.item() == -1.0
    assert ctl.p.item() == 0.0 and ctl.current_p == 0.0  # clamped at 0; the pipeline is skipped again


@pytest.mark.parametrize("total_steps", [800, 3200])
def test_without_ada_kimg_p_goes_0_to_1_in_a_tenth_of_the_run_whatever_its_length(total_steps):
    """train.ada_kimg unset: p's speed follows the run's length (ada.RUN_FRACTION), so a short run's p can reach
    1 within it; it rises while D is sure of the reals, falls at the same speed when it is not."""
    step = ada.step_size(4, total_steps)
    ctl = _controller(kimg=None, step=step, interval=4)
    tenth = total_steps // 10
    _steps(ctl, torch.full((32,), 2.2), tenth // 2 + 1)  # logits of a D that learnt the smoothed label 0.9
    assert ctl.p.item() == pytest.approx(0.5, abs=1e-5)  # half-way in a twentieth of the run
    _steps(ctl, torch.full((32,), 2.2), tenth)
    assert ctl.p.item() == 1.0
    ctl2 = _controller(kimg=None, step=step, interval=4)
    _steps(ctl2, torch.cat([torch.full((28,), 2.2), torch.full((4,), -0.5)]), tenth + 1)  # r_t 0.75 > target 0.6
    assert ctl2.p.item() == pytest.approx(1.0, abs=1e-5)
    _steps(ctl2, torch.cat([torch.full((20,), 2.2), torch.full((12,), -0.5)]), tenth // 4 + 1)  # r_t 0.25 < 0.6
    assert ctl2.p.item() == pytest.approx(0.75, abs=1e-5)
    with pytest.raises(ValueError, match="kimg or step"):
        _controller(kimg=None)


def test_a_fixed_p_stays_fixed_while_r_t_is_measured():
    ctl = _controller(fixed_p=0.3)
    _steps(ctl, torch.full((32,), 3.0), 9)
    assert ctl.p.item() == pytest.approx(0.3) and ctl.rt.item() == 1.0
    assert isinstance(ctl.current_p, torch.Tensor)


def test_controller_state_round_trips():
    ctl = _controller()
    _steps(ctl, torch.full((32,), 3.0), 5)
    tensors, meta = ctl.state()
    back = _controller()
    back.load_state({k: v.clone() for k, v in tensors.items()}, json.loads(json.dumps(meta)))
    for k, v in back.state()[0].items():
        assert torch.equal(v, tensors[k]), k
    assert back.measured == ctl.measured and back.active


NOISE_TO_IMAGE = ["mlp", "dcgan", "cdcgan", "ssgan", "ssgan-mlp", "progan", "stylegan"]


@pytest.mark.parametrize("family", NOISE_TO_IMAGE)
def test_resume_is_exact_with_ada_and_restores_p(tmp_path, family, monkeypatch, assert_same_run, resume_device):
    # p starts at 0.5 and moves 0.064 every 2 steps (64 reals / 1000), whichever way D leans: the pipeline runs
    # from the first step, and a p reset on resume (to 0.5 or 0) would show in the weights and the logged ada_p
    monkeypatch.setattr(AdaController, "start_p", 0.5)
    cfg = tiny_config(family, steps=12, augment="ada", ada_kimg=1.0, ada_interval=2, device=resume_device)
    train(cfg, tmp_path / "straight", **quiet)
    train(cfg, tmp_path / "resumed", stop_after_steps=5, **quiet)
    stopped = load_latest(tmp_path / "resumed" / "checkpoints")
    p_at_stop = stopped.optim["extra.ada_p"].item()
    assert stopped.state["step"] == 5 and 0 < p_at_stop != 0.5
    assert stopped.optim["extra.ada_count"].item() > 0  # mid-interval: the tally travels too
    assert train(cfg, tmp_path / "resumed", resume=True, **quiet).steps == 12
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    records = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "ada_p" in r]
    assert len(logged) == 6 and all(r["ada_p"] > 0 for r in logged) and "ada_rt" in logged[-1]


@pytest.mark.parametrize("family, extra", [
    ("dcgan", {"loss": "wgan-gp", "d_steps": 2}),
    ("dcgan", {"r1_gamma": 1.0, "r1_every": 2, "g_objective": "feature_matching"}),
    ("dcgan", {"r1_gamma": 1.0, "reuse_fake": True, "instance_noise": 0.1}),
    ("dcgan", {"unrolled_steps": 2}),
    ("mlp", {"loss": "hinge"}),
])
def test_ada_trains_with_the_other_tricks(tmp_path, family, extra):
    run_dir = tmp_path / "run"
    train(tiny_config(family, steps=4, log_every=1, augment="ada", ada_p=0.5, **extra), run_dir, **quiet)
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    recs = [r for r in recs if "loss_d" in r]
    assert len(recs) == 4 and all(r["ada_p"] == 0.5 for r in recs)
    assert all(all(v == v for v in r.values() if isinstance(v, float)) for r in recs)  # no NaN


def _ada_log(run_dir) -> list[tuple[float, float]]:
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["ada_p"], r["ada_rt"]) for r in recs if "ada_rt" in r]


def test_with_rpgan_adas_r_t_ignores_a_drift_of_ds_output(tmp_path, monkeypatch):
    """RpGAN (and R1, R2) see only differences of D's outputs, so a D whose logits all sit 50 higher trains alike;
    r_t must read the same, not sign(D(x)) = +1 everywhere, which drove p to 1 and G to garbage on colour."""
    from ganforge.families.dcgan import DCGANDiscriminator

    cfg = tiny_config("dcgan", steps=12, log_every=1, augment="ada", ada_kimg=1.0, ada_interval=2, loss="rpgan",
                      r1_gamma=0.1, r2_gamma=0.1, real_label=1.0)
    train(cfg, tmp_path / "plain", **quiet)
    forward = DCGANDiscriminator.forward
    monkeypatch.setattr(DCGANDiscriminator, "forward", lambda self, x, y=None: forward(self, x, y) + 50.0)
    train(cfg, tmp_path / "drifted", **quiet)
    plain, drifted = _ada_log(tmp_path / "plain"), _ada_log(tmp_path / "drifted")
    assert len(plain) >= 5 and any(rt < 1.0 for _, rt in plain)
    assert [p for p, _ in drifted] == pytest.approx([p for p, _ in plain], abs=1e-6)
    assert [rt for _, rt in drifted] == pytest.approx([rt for _, rt in plain], abs=1e-6)


def test_a_rollback_puts_adas_state_back_with_the_checkpoint(tmp_path, monkeypatch):
    from test_reliability import events, poison_g_loss

    monkeypatch.setattr(AdaController, "start_p", 0.5)
    loaded = []
    real_load = AdaController.load_state
    monkeypatch.setattr(AdaController, "load_state",
                        lambda self, t, m: (loaded.append(float(t["ada_p"])), real_load(self, t, m)))
    poison_g_loss(monkeypatch, set(range(10, 13)))  # 3 in a row from the 11th G step: back to step 8's checkpoint
    cfg = tiny_config("dcgan", steps=16, augment="ada", ada_kimg=1.0, ada_interval=2, guard={"max_skips": 3})
    train(cfg, tmp_path / "run", **quiet)
    assert [e["event"] for e in events(tmp_path / "run")] == ["rollback"]
    saved = {ck.state["step"]: ck for ck in map(load_checkpoint, list_checkpoints(tmp_path / "run" / "checkpoints"))}
    assert loaded == [saved[8].optim["extra.ada_p"].item()] and loaded[0] != 0.5  # step 8's p, not the start's


def test_ada_stats_reach_stats_png_and_the_report(tmp_path):
    from ganforge.apps.report import curve_keys, load_run
    from ganforge.families.contract import Trainer
    from ganforge.viz import family_stat_series

    run_dir = tmp_path / "run"
    train(tiny_config("dcgan", steps=8, augment="ada", ada_p=0.4), run_dir, **quiet)
    series = family_stat_series(run_dir / "metrics.jsonl", Trainer.loss_panels)
    assert {"ada_p", "ada_rt"} <= set(series) and (run_dir / "stats.png").is_file()
    assert {"ada_p", "ada_rt"} <= set(curve_keys([load_run(run_dir)]))
    assert all(v == pytest.approx(0.4) for v in series["ada_p"][1])


def test_without_ada_nothing_changes(tiny):
    cfg = tiny("dcgan")
    assert cfg.train.augment == "none"
    from ganforge.families import build_networks
    from ganforge.families.contract import RunContext
    from ganforge.families.noise_to_image import GanTrainer

    trainer = GanTrainer(cfg, build_networks(cfg.model), RunContext(torch.device("cpu")))
    assert trainer.ada is None and "ada_p" not in trainer.stat_keys and trainer.extra_state() == ({}, {})
    x = torch.zeros(2, 1, 16, 16)
    assert trainer.augment(x) is x


def test_cli_rejects_an_unknown_pipe_letter_in_one_line_and_writes_nothing(tmp_path):
    res = run("train", "dcgan-mnist", "--set", "train.augment=ada", "--set", "train.ada_pipe=bxz",
              "--out", str(tmp_path / "out"), "--device", "cpu", cwd=tmp_path)
    _assert_user_error(res, "train.ada_pipe", "'x'", "bgc")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("preset", ["pix2pix-sr-digits", "cyclegan-thin2thick"])
def test_translation_families_refuse_ada_in_one_line(tmp_path, preset):
    res = run("train", preset, "--set", "train.augment=ada", "--out", str(tmp_path / "out"), "--device", "cpu",
              cwd=tmp_path)
    _assert_user_error(res, "train.augment: family", "does not read it")
    assert list(tmp_path.iterdir()) == []


def test_points_refuse_ada():
    with pytest.raises(UserError, match="makes points"):
        validate({"model": {"family": "mlp", "point_dim": 2}, "data": {"spec": "ring8"},
                  "train": {"augment": "ada", "device": "cpu"}})


def test_each_rank_augments_its_slice_as_one_process_augments_the_global_batch():
    x = _images(3).detach()
    torch.manual_seed(2)
    whole = augment(x, 0.8)
    for rank in range(2):
        torch.manual_seed(2)
        assert torch.equal(augment(x[rank * 8:(rank + 1) * 8], 0.8, world=2, rank=rank), whole[rank * 8:(rank + 1) * 8])


def _ada_worker(rank: int, root: str, cfg_data: dict, port: int) -> None:
    """One rank of a data-parallel ADA run; its parameters are dumped for comparison."""
    import os
    from pathlib import Path

    from safetensors.torch import save_file

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    summary = train(validate(cfg_data), Path(root) / "dp", **quiet)
    save_file({f"{name}.{k}": v.detach().cpu().contiguous().clone() for name, m in summary.models.items()
               for k, v in m.state_dict().items()}, str(Path(root) / f"rank{rank}.safetensors"))


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_processes_with_ada_equal_one_process(tmp_path):
    import time

    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    from test_distributed import _free_port, _metrics, mlp_config

    cfg_data = mlp_config(augment="ada", ada_p=0.6, ada_interval=2)
    ctx = mp.start_processes(_ada_worker, args=(str(tmp_path), cfg_data, _free_port()), nprocs=2, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + 180
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail("the 2 processes did not finish")
    single = train(validate(cfg_data), tmp_path / "single", **quiet)
    r0, r1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
        torch.testing.assert_close(r0[k], single.models[k.split(".")[0]].state_dict()[k.split(".", 1)[1]].cpu(),
                                   atol=1e-5, rtol=0)
    for a, b in zip(_metrics(tmp_path / "dp"), _metrics(tmp_path / "single")):
        assert a["ada_p"] == b["ada_p"] == pytest.approx(0.6)
        assert a.get("ada_rt") == pytest.approx(b.get("ada_rt"), abs=1e-4)  # r_t over the global batch


def test_ada_module_draws_from_the_global_rng():
    x = _images(3).detach()
    torch.manual_seed(5)
    a = augment(x, 0.7)
    torch.manual_seed(5)
    assert torch.equal(a, augment(x, 0.7))
    assert ada.PIPE_LETTERS == ("b", "g", "c")
