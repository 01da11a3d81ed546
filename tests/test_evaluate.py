"""ganforge evaluate: sources, labelled metrics, the reference cache, and evaluation during training."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ganforge import viz
from ganforge.checkpoint import list_checkpoints
from ganforge.config import DataConfig, model_config
from ganforge.data import build_dataset
from ganforge.errors import UserError
from ganforge.metrics.evaluate import evaluate, eval_json_path, metric_is_better
from ganforge.train import train

quiet = dict(progress=False, log=lambda s: None)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def real_npz(tmp_path_factory):
    ds = build_dataset(DataConfig(spec="mnist-embedded"), model_config(image_size=32, channels=1))
    path = tmp_path_factory.mktemp("npz") / "real.npz"
    viz.save_npz(ds.tensor[:500], path)
    return path


def test_real_digits_against_themselves_score_perfectly(real_npz):
    res = evaluate(real_npz, "mnist-embedded", ["fid", "kid", "is", "prc", "coverage"], n=500)
    m = res["metrics"]
    assert res["extractor"] == "mnist-cnn" and res["n_generated"] == res["n_reference"] == 500
    assert abs(m["fid[mnist-cnn]"]) < 1e-3  # uint8 round trip of the same images
    # the unbiased MMD^2 of a set against itself is slightly negative (its cross term keeps the diagonal);
    # noise scores ~4 on this scale
    assert abs(m["kid[mnist-cnn]"]) < 0.1
    assert m["precision[mnist-cnn]"] == pytest.approx(1.0) and m["recall[mnist-cnn]"] == pytest.approx(1.0)
    assert m["classes_covered"] == 10 and m["class_kl"] < 1e-3
    assert 8.5 < m["is[mnist-cnn]"] <= 10  # a confident classifier on balanced digits: close to K = 10


def test_noise_scores_badly(tmp_path, real_npz):
    noise = np.random.default_rng(0).integers(0, 255, (300, 32, 32, 1), dtype=np.uint8)
    path = tmp_path / "noise.npz"
    np.savez(path, noise)
    good = evaluate(real_npz, "mnist-embedded", ["fid"], n=300)["metrics"]["fid[mnist-cnn]"]
    bad = evaluate(path, "mnist-embedded", ["fid"], n=300)["metrics"]["fid[mnist-cnn]"]
    assert bad > 50 * max(good, 1e-3)


def test_reference_statistics_are_cached(tmp_path, real_npz):
    first = evaluate(real_npz, "mnist-embedded", ["fid", "kid"], n=200)
    files = list((tmp_path / "cache" / "refstats").glob("*.npz"))
    assert len(files) == 1 and "mnist-cnn" in files[0].name and "32px" in files[0].name
    again = evaluate(real_npz, "mnist-embedded", ["fid", "kid"], n=200)
    assert again["metrics"] == first["metrics"]
    files[0].write_bytes(b"garbage")  # a broken cache is recomputed, not trusted
    assert evaluate(real_npz, "mnist-embedded", ["fid"], n=200, log=lambda s: None)["metrics"]["fid[mnist-cnn]"] \
        == pytest.approx(first["metrics"]["fid[mnist-cnn]"])


def test_run_directory_and_folder_sources(tmp_path, tiny):
    run = tmp_path / "run"
    train(tiny("dcgan", steps=4, log_every=2), run, **quiet)
    res = evaluate(run, "mnist-embedded", ["fid", "coverage"], n=64)
    assert res["image_size"] == 16 and set(res["metrics"]) == {"fid[mnist-cnn]", "classes_covered", "class_kl"}
    assert eval_json_path(run) == run / "eval.json"
    folder = tmp_path / "pngs"
    viz.save_image_folder(np.zeros((5, 1, 16, 16), dtype=np.float32), folder)
    assert evaluate(folder, "mnist-embedded", ["fid"], n=5)["n_generated"] == 5


def test_stacked_mnist_mode_coverage_on_real_data(tmp_path):
    ds = build_dataset(DataConfig(spec="stacked-mnist", limit=3000), model_config(image_size=32, channels=3))
    path = tmp_path / "stacked.npz"
    viz.save_npz(ds.tensor, path)
    m = evaluate(path, "stacked-mnist", ["coverage"], n=3000)["metrics"]
    assert m["modes_covered"] > 900  # 3,000 real triples hit most of the 1,000 modes
    assert m["modes_kl"] < 0.5


def test_bad_inputs_are_user_errors(tmp_path, real_npz):
    with pytest.raises(UserError, match="unknown metric 'fidd'"):
        evaluate(real_npz, "mnist-embedded", ["fidd"])
    with pytest.raises(UserError, match="mnist-cnn, inception-v3"):
        evaluate(real_npz, "mnist-embedded", ["fid"], extractor="vgg")
    bad = tmp_path / "bad.npz"
    np.savez(bad, np.zeros((4, 32, 32), dtype=np.float32))
    with pytest.raises(UserError, match="uint8"):
        evaluate(bad, "mnist-embedded", ["fid"])


def test_cli_evaluate_prints_a_table_and_writes_json(tmp_path, real_npz):
    res = subprocess.run([sys.executable, "-m", "ganforge", "evaluate", str(real_npz), "--n", "200", "--metrics",
                          "fid,coverage", "--out", str(tmp_path / "e.json")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "fid[mnist-cnn]" in res.stdout and "classes_covered" in res.stdout
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["metrics"]["classes_covered"] == 10
    bad = subprocess.run([sys.executable, "-m", "ganforge", "evaluate", str(real_npz), "--metrics", "nope"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown metric")


def test_periodic_evaluation_logs_and_keeps_the_best_checkpoint(tmp_path, tiny):
    cfg = tiny("dcgan", steps=24, keep_checkpoints=1)
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"every": 4, "n": 64, "metrics": ["fid", "coverage"]})})
    run = tmp_path / "run"
    train(cfg, run, **quiet)
    evals = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in l]
    assert [e["step"] for e in evals] == [4, 8, 12, 16, 20, 24]
    fids = [e["eval"]["fid[mnist-cnn]"] for e in evals]
    best_name = (run / "checkpoints" / "best").read_text().strip()
    best_step = int(best_name.rsplit("-s", 1)[1])
    assert best_step == evals[int(np.argmin(fids))]["step"]
    assert (run / "checkpoints" / best_name).is_dir()  # kept even with keep_checkpoints=1
    assert len(list_checkpoints(run / "checkpoints")) <= 2


def test_metric_direction():
    assert metric_is_better("fid[mnist-cnn]", 1.0, 2.0) and not metric_is_better("fid[x]", 3.0, 2.0)
    assert metric_is_better("is[mnist-cnn]", 3.0, 2.0) and metric_is_better("classes_covered", 10, 9)
    assert metric_is_better("fid[x]", 5.0, None)
