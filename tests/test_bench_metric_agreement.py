"""``bench metric-agreement`` on a tiny size: the sets, Spearman's rho, the flags and the table."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ganforge.bench import metric_agreement as ma


def test_spearman_matches_the_textbook_formula_and_handles_ties():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(size=12)
    d = ma.ranks(a) - ma.ranks(b)
    assert ma.spearman(a, b) == pytest.approx(1 - 6 * (d ** 2).sum() / (12 * (144 - 1)))
    assert ma.spearman(a, 3 * a + 1) == pytest.approx(1.0) and ma.spearman(a, -a) == pytest.approx(-1.0)
    assert list(ma.ranks([5, 1, 5, 2])) == [3.5, 1.0, 3.5, 2.0]


def test_the_ground_truth_is_the_judges_mean_rank_and_their_agreement_the_mean_pairwise_rho():
    a, b, c = [1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 3.0, 9.0], [10.0, 20.0, 40.0, 30.0]
    assert list(ma.consensus([a, b, c])) == pytest.approx([4 / 3, 5 / 3, 10 / 3, 11 / 3])
    pairs = [ma.spearman(a, b), ma.spearman(a, c), ma.spearman(b, c)]
    assert ma.judges_agreement([a, b, c]) == pytest.approx(sum(pairs) / 3)
    assert ma.judges_agreement([a]) is None  # one judge: nothing to agree with


def test_the_sets_differ_as_named():
    pool = torch.rand(30, 3, 32, 32) * 2 - 1
    y = torch.arange(30) % 3
    sets = ma.quality_sets(pool, y)
    assert len(sets) >= 12 and len({s for s, _, _ in sets}) == len(sets)
    kinds = {k for _, k, _ in sets}
    assert kinds == {"graded", "one-class", "collapsed"}
    named = {s: x for s, _, x in sets}
    assert all(x.shape == pool.shape and x.min() >= -1 and x.max() <= 1 for x in named.values())
    assert torch.equal(named["reals"], pool)
    assert len(torch.unique(named["1 image repeated"].flatten(1), dim=0)) == 1
    assert len(torch.unique(named["10 images repeated"].flatten(1), dim=0)) <= 10
    blur = ma._blur(pool, 1.5)
    assert (blur[:, :, 1:] - blur[:, :, :-1]).abs().mean() < 0.5 * (pool[:, :, 1:] - pool[:, :, :-1]).abs().mean()


def test_tiny_run_on_digits(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path))
    part = ma.digits_part(limit=50, judge_limit=256)
    res = ma.run_part(part, ["pixels", "random-conv", "ssl-conv"], judge_epochs=1, ssl_steps=5, log=lambda s: None,
                      judges=2)
    names = [s for s, _ in res["sets"]]
    assert list(res["fids"]["judges-rank"]) == pytest.approx(list(ma.consensus([res["fids"]["judge-0"],
                                                                        res["fids"]["judge-1"]])))
    assert res["fids"]["judge-0"] != res["fids"]["judge-1"]  # two seeds, two judges
    assert res["rho_single"]["pixels"] == pytest.approx(np.mean([ma.spearman(res["fids"][f"judge-{k}"],
                                                                              res["fids"]["pixels"]) for k in (0, 1)]))
    assert -1 <= res["judge"]["agreement"] <= 1 and len(res["judge"]["accuracies"]) == 2
    for space in ("judge-0", "judge-1", "pixels", "random-conv", "ssl-conv"):
        f = dict(zip(names, res["fids"][space]))
        assert f["reals"] < f["noise s=0.4"] < f["pure noise"], space  # clearly different, whatever the space
    assert all(-1 <= r <= 1 for r in res["rho"].values())
    assert res["rho"]["random-conv"] > 0.5
    assert res["flagged"]["random-conv"]["1 image repeated"]  # one image repeated has (almost) no recall
    assert set(res["modes_dropped"]["pixels"]) <= set(names) - {"reals"}
    assert "pure noise" not in res["modes_dropped"]["random-conv"]  # low coverage, but nothing like the data
    md = ma.render([res], {"cpu": "test cpu", "logical_cores": 2, "torch": "x", "torch_threads": 1}, "cmd", "today")
    assert md.startswith("<!-- bench:metric-agreement:start -->")
    assert "rho ssl-conv" in md and "1 image repeated" in md and "test cpu" in md


def test_cli_refuses_bad_names(tmp_path):
    from typer.testing import CliRunner

    from ganforge.cli import app

    res = CliRunner().invoke(app, ["bench", "metric-agreement", "--data", "faces"])
    assert res.exit_code == 2 and "faces" in res.output
    res = CliRunner().invoke(app, ["bench", "metric-agreement", "--candidates", "vgg"])
    assert res.exit_code == 2 and "vgg" in res.output
    res = CliRunner().invoke(app, ["bench", "metric-agreement", "--candidates", "pixels,ssl-conv@hue=0.1"])
    assert res.exit_code == 2 and "hue=0.1" in res.output and "colour" in res.output  # names the fields it has


def test_gan_sets_are_trained_on_the_judges_part_sampled_at_the_pools_side_and_reused(tmp_path, monkeypatch):
    from ganforge.bench import gan_sets
    from ganforge.config.loading import load_run_config

    monkeypatch.setattr(gan_sets, "RUNS", {"digits": [("mlp", "mnist-mlp", 2, ["data.split=train"])]})
    logs: list[str] = []
    sets = gan_sets.gan_sets("digits", gan_sets.train_spec("digits", tmp_path), 24, 32, tmp_path, log=logs.append)
    [(name, kind, x)] = sets
    assert name == "mlp, 2 steps" and kind == "graded"
    assert x.shape == (24, 1, 32, 32) and x.min() >= -1 and x.max() <= 1  # the mlp draws 28 px: resized
    cfg = load_run_config(tmp_path / "digits" / "mlp-2-s0")
    assert cfg.data.split == "train" and cfg.train.steps == 2  # never the held-out digits the sets are scored on
    again = gan_sets.gan_sets("digits", "mnist-embedded", 24, 32, tmp_path, log=logs.append)
    assert any("reused" in line for line in logs) and torch.equal(again[0][2], x)
    logs.clear()
    other = gan_sets.gan_sets("digits", "mnist-embedded", 24, 32, tmp_path, seed=1, log=logs.append)
    assert not any("reused" in line for line in logs)  # another seed is another run, never seed 0's rescored
    assert load_run_config(tmp_path / "digits" / "mlp-2-s1").train.seed == 1 and not torch.equal(other[0][2], x)


def test_a_folder_holding_a_run_with_other_settings_is_refused_not_rescored(tmp_path):
    import json

    from ganforge.bench.recipe import train_or_reuse
    from ganforge.errors import UserError

    out = tmp_path / "run"
    out.mkdir()
    (out / "bench_row.json").write_text(json.dumps({"sets": ["a=1"], "preset": "dcgan-mnist", "seed": 0,
                                                    "steps_asked": 5, "run": str(out)}))
    assert train_or_reuse("v", "dcgan-mnist", ["a=1"], out, 0, 5, log=lambda s: None)["run"] == str(out)
    with pytest.raises(UserError, match="other settings \\(seed\\)"):
        train_or_reuse("v", "dcgan-mnist", ["a=1"], out, 1, 5, log=lambda s: None)
