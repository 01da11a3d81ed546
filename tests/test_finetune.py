"""Fine-tuning (issue 24): --init-from starts a new run from a finished run's weights with fresh optimizers at
step 0, refusing in one line what cannot be a source; train.freeze_d (FreezeD) keeps D's first blocks fixed."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ganforge.checkpoint import load_latest
from ganforge.config import load_run_config
from ganforge.errors import UserError
from ganforge.train.distributed import init_from_env
from ganforge.train.loop import Run, train
from conftest import tiny_config
from test_cli import TINY, _assert_user_error, run

quiet = dict(progress=False, log=lambda s: None)


def _ema_on(cfg):
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"ema": cfg.train.ema.model_copy(
        update={"enabled": True, "decay": 0.5})})})


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Finished tiny runs to start from, by family (EMA on, so G_ema differs from G)."""
    root = tmp_path_factory.mktemp("sources")
    out = {}
    for family in ("dcgan", "stylegan"):
        train(_ema_on(tiny_config(family, steps=4)), root / family, **quiet)
        out[family] = root / family
    return out


def _opened(cfg, source: Path, out: Path) -> Run:
    """A new run built with --init-from and given its directory, before any step."""
    r = Run(cfg, init_from_env("cpu"), out, log=lambda s: None, strict_data=False, with_evaluator=False,
            init_from=source)
    r.open(resume=False, force=False)
    return r


@pytest.mark.parametrize("family", ["dcgan", "stylegan"])
def test_init_from_copies_every_weight_and_buffer_with_fresh_optimizers(sources, tiny, tmp_path, family):
    ckpt = load_latest(sources[family] / "checkpoints")
    r = _opened(_ema_on(tiny(family, steps=4, seed=11)), sources[family], tmp_path / "new")
    for name, net in r.models.all_models().items():
        saved = ckpt.module_state(name)
        assert saved and net.state_dict().keys() == saved.keys(), name
        for k, v in net.state_dict().items():
            assert torch.equal(v.cpu(), saved[k].cpu()), f"{name}.{k}"
    g, g_ema = ckpt.module_state("G"), ckpt.module_state("G_ema")
    assert any(not torch.equal(v, g_ema[k]) for k, v in g.items())  # so the EMA copy came from G_ema, not G
    assert r.at.step == 0 and all(not opt.state for opt in r.models.optimizers.values())  # no moments, no step counts


def test_the_fine_tuned_run_records_its_source_and_trains(sources, tmp_path):
    out = tmp_path / "ft"
    res = run("train", "dcgan-mnist", "--steps", "2", "--out", str(out), "--init-from", str(sources["dcgan"]),
              *TINY, "--set", "model.z_dim=16", "--seed", "3")
    assert res.returncode == 0, res.stderr
    assert load_run_config(out).init_from == str(sources["dcgan"])
    assert load_latest(out / "checkpoints").state["step"] == 2
    from ganforge.apps.runs import describe

    assert describe(out).preset == "dcgan-mnist <- dcgan"  # ganforge runs names the source


def _refused(tiny, tmp_path, source, match: str, **model):
    cfg = tiny("dcgan", steps=2)
    if model:
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update=model)})
    with pytest.raises(UserError, match=match):
        train(cfg, tmp_path / "new", init_from=source, **quiet)
    assert not (tmp_path / "new").exists()


def test_a_run_of_another_family_is_refused(sources, tiny, tmp_path):
    cfg = tiny("mlp", steps=2)
    with pytest.raises(UserError, match="is a dcgan run; this one is mlp"):
        train(cfg, tmp_path / "new", init_from=sources["dcgan"], **quiet)
    assert not (tmp_path / "new").exists()


def test_other_shapes_are_refused_naming_the_keys(sources, tiny, tmp_path):
    _refused(tiny, tmp_path, sources["dcgan"], r"other shapes in \d+ tensors \(G\.", g_width=16)


def test_other_keys_are_refused_naming_them(sources, tiny, tmp_path):
    _refused(tiny, tmp_path, sources["dcgan"], r"missing in it \(D\..*parametrizations", spectral_norm=True)


def test_missing_and_unfinished_runs_are_refused(sources, tiny, tmp_path):
    import shutil

    _refused(tiny, tmp_path, tmp_path / "nowhere", "no such run directory")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(sources["dcgan"], unfinished)
    shutil.rmtree(unfinished / "checkpoints")
    _refused(tiny, tmp_path, unfinished, "has no finished checkpoint")


def test_cli_refuses_init_from_with_resume_and_a_missing_source(sources, tmp_path):
    res = run("train", "--resume", str(sources["dcgan"]), "--init-from", str(sources["dcgan"]))
    _assert_user_error(res, "--init-from", "--resume")
    res = run("train", "dcgan-mnist", "--out", str(tmp_path / "new"), "--init-from", str(tmp_path / "gone"), *TINY)
    _assert_user_error(res, "no such run directory")
    assert not (tmp_path / "new").exists()


# --------------------------------------------------------------------------- FreezeD


def test_freeze_d_keeps_the_first_blocks_and_trains_the_rest(sources, tiny, tmp_path):
    source = load_latest(sources["dcgan"] / "checkpoints").module_state("D")
    summary = train(tiny("dcgan", steps=4, freeze_d=1), tmp_path / "ft", init_from=sources["dcgan"], **quiet)
    D = summary.models["D"]
    blocks = D.d_blocks()
    names = {id(p): n for n, p in D.named_parameters()}
    frozen = [names[id(p)] for p in blocks[0].parameters()]
    later = [names[id(p)] for b in blocks[1:] for p in b.parameters()]
    now = D.state_dict()
    assert frozen and all(torch.equal(now[n], source[n]) for n in frozen)
    assert later and all(not torch.equal(now[n], source[n]) for n in later)
    head = [n for n in names.values() if n not in frozen + later]
    assert head and all(not torch.equal(now[n], source[n]) for n in head)


def test_freeze_d_resumes_exactly(tiny, tmp_path, assert_same_run):
    cfg = tiny("dcgan", steps=6, freeze_d=1)
    train(cfg, tmp_path / "straight", **quiet)
    train(cfg, tmp_path / "resumed", stop_after_steps=3, **quiet)
    train(cfg, tmp_path / "resumed", resume=True, **quiet)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


@pytest.mark.parametrize("family, k, match", [
    ("dcgan", 3, r"train.freeze_d=3, but dcgan's D has 2 blocks: use --set train.freeze_d=2 or less"),
    ("pix2pix", 1, "family 'pix2pix' cannot freeze D"),
])
def test_freeze_d_refusals(tiny, tmp_path, family, k, match):
    with pytest.raises(UserError, match=match):
        train(tiny(family, steps=2, freeze_d=k), tmp_path / "run", **quiet)
    assert not (tmp_path / "run").exists()
