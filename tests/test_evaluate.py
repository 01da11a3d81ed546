"""ganforge evaluate: sources, labelled metrics, the reference cache, and evaluation during training."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge import viz
from ganforge.checkpoint import list_checkpoints
from ganforge.config import DataConfig, model_config
from ganforge.data import build_dataset
from ganforge.data.embedded import load_raw
from ganforge.data.shapes import colour_shapes
from ganforge.data.imageops import resize_center_crop
from ganforge.errors import UserError
from ganforge.apps.evaluate import evaluate, eval_json_path
from ganforge.metrics.pipeline import format_table
from ganforge.metrics.registry import is_better as metric_is_better
from ganforge.apps.training import train

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


def test_a_missing_class_shows_as_min_class_share_and_a_warning(tmp_path, real_npz):
    ds = build_dataset(DataConfig(spec="mnist-embedded"), model_config(image_size=32, channels=1))
    path = tmp_path / "no-sevens.npz"
    viz.save_npz(ds.tensor[:600][ds.labels[:600] != 7], path)  # 540 real digits, none a 7
    res = evaluate(path, "mnist-embedded", ["coverage"], n=540)
    assert res["metrics"]["min_class_share"] < 0.01 and res["class_shares"][7] == res["metrics"]["min_class_share"]
    assert "warning: class 7 under 0.25x its fair share: faded out" in format_table(res)
    full = evaluate(real_npz, "mnist-embedded", ["coverage"], n=500)
    assert full["metrics"]["min_class_share"] > 0.08 and "warning" not in format_table(full)


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
    assert res["image_size"] == 16 and set(res["metrics"]) == {"fid[mnist-cnn]", "classes_covered", "class_kl",
                                                                     "min_class_share"}
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
    with pytest.raises(UserError, match="inception-v3, mnist-cnn"):
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


def test_periodic_evaluation_falls_back_to_an_offline_extractor(tmp_path, tiny, monkeypatch):
    """eval.extractor's weights absent (offline): the periodic evaluation says so once and scores with the offline
    fallback rather than failing the run."""
    import ganforge.train.reference as reference

    monkeypatch.setattr(reference, "OFFLINE_FALLBACK", "random-conv")  # no weights to fit: the test stays quick
    OFFLINE_FALLBACK = reference.OFFLINE_FALLBACK
    monkeypatch.setenv("GANFORGE_INCEPTION_WEIGHTS", str(tmp_path / "absent.pth"))
    cfg = tiny("dcgan", steps=4)
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"every": 2, "n": 32, "best": None,
                                                                     "extractor": "inception-v3"})})
    said = []
    train(cfg, tmp_path / "run", progress=False, log=said.append)
    evals = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"eval"' in l]
    assert [e["step"] for e in evals] == [2, 4] and all(f"fid[{OFFLINE_FALLBACK}]" in e["eval"] for e in evals)
    assert sum("extractor inception-v3 unavailable" in s for s in said) == 1


# ------------------------------------------------------------------------------------------ any size and shape


def _digits_at(hw: tuple[int, int], start: int = 0, n: int = 500) -> np.ndarray:
    """The raw 28x28 embedded digits ``start:start+n`` taken to (h, w) by PIL, one at a time, as uint8 (N, H, W, 1):
    made independently of the reference's batched tensor pipeline."""
    raw = load_raw()[0][start:start + n]
    if hw == (28, 28):
        return raw[..., None].copy()
    return np.stack([np.asarray(resize_center_crop(Image.fromarray(x), hw)) for x in raw])[..., None]


def _npz(path, arr):
    np.savez(path, arr)
    return path


def test_raw_28px_digits_score_zero_against_the_reference_as_is(tmp_path):
    res = evaluate(_npz(tmp_path / "d28.npz", _digits_at((28, 28))), "mnist-embedded", ["fid"], n=500)
    assert res["metrics"]["fid[mnist-cnn]"] < 1e-3  # the very same images: measured 2e-12
    assert res["reference_prep"] == "28x28 as is"
    assert (res["image_size"], res["image_height"], res["image_width"], res["channels"]) == (28, 28, 28, 1)


def test_48px_digits_resized_by_pil_score_near_zero(tmp_path):
    res = evaluate(_npz(tmp_path / "d48.npz", _digits_at((48, 48))), "mnist-embedded", ["fid"], n=500)
    # measured 5e-6 (PIL vs torch bilinear); two disjoint 500-digit sets score ~1.6 at 48x48 and ~2.5 at 28x28
    assert res["metrics"]["fid[mnist-cnn]"] < 0.01
    assert res["reference_prep"] == "resized 28x28 -> 48x48"


def test_non_square_npz_is_evaluated_at_its_own_shape(tmp_path, capsys):
    res = evaluate(_npz(tmp_path / "d.npz", _digits_at((28, 40))), "mnist-embedded", ["fid"], n=500)
    # PIL's resize_center_crop per image and the reference's batched resize follow one rule: measured 1e-5
    assert res["metrics"]["fid[mnist-cnn]"] < 0.01
    assert res["reference_prep"] == "resized and centre-cropped 28x28 -> 28x40"
    assert res["image_size"] is None and (res["image_height"], res["image_width"]) == (28, 40)
    assert "reference mnist-embedded: resized and centre-cropped 28x28 -> 28x40" in format_table(res)
    assert [f.name for f in (tmp_path / "cache" / "refstats").glob("*.npz")] == \
        ["mnist-embedded-28x40px-1ch-mnist-cnn-n500.npz"]
    rgb = np.repeat(_digits_at((28, 40), n=100), 3, axis=3)
    again = evaluate(_npz(tmp_path / "rgb.npz", rgb), "mnist-embedded", ["fid"], n=100)
    assert again["channels"] == 3 and again["reference_prep"].endswith(", grey repeated to RGB")


def test_folder_of_grey_pngs_is_read_at_its_own_size(tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, x in enumerate(_digits_at((28, 28), n=100)[..., 0]):
        Image.fromarray(x).save(folder / f"{i:03d}.png")
    res = evaluate(folder, "mnist-embedded", ["fid"], n=100)
    assert (res["image_height"], res["image_width"], res["channels"]) == (28, 28, 1)
    assert res["reference_prep"] == "28x28 as is" and res["metrics"]["fid[mnist-cnn]"] < 1e-3


@pytest.mark.parametrize("arr, match", [
    (np.zeros((4, 28, 28, 2), dtype=np.uint8), "C = 1 or 3"),
    (np.zeros((0, 28, 28, 1), dtype=np.uint8), "N >= 1"),
    (np.zeros((4, 6, 40, 1), dtype=np.uint8), "6x40, too small"),
])
def test_bad_shapes_are_user_errors(tmp_path, arr, match):
    with pytest.raises(UserError, match=match):
        evaluate(_npz(tmp_path / "bad.npz", arr), "mnist-embedded", ["fid"])


def test_empty_or_tiny_folder_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no image files"):
        evaluate(tmp_path / "empty", "mnist-embedded", ["fid"])
    (tmp_path / "tiny").mkdir()
    Image.new("L", (5, 5)).save(tmp_path / "tiny" / "a.png")
    with pytest.raises(UserError, match="5x5, too small"):
        evaluate(tmp_path / "tiny", "mnist-embedded", ["fid"])


def test_cli_evaluates_28px_and_rejects_a_bad_npz_in_one_line(tmp_path):
    good = _npz(tmp_path / "x.npz", _digits_at((28, 28), n=300))
    cmd = [sys.executable, "-m", "ganforge", "evaluate"]
    res = subprocess.run(cmd + [str(good), "--ref", "mnist-embedded", "--metrics", "fid", "--n", "300"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "reference mnist-embedded: 28x28 as is" in res.stdout
    data = json.loads((tmp_path / "x.eval.json").read_text())
    assert data["reference_prep"] == "28x28 as is" and data["image_size"] == 28
    bad = _npz(tmp_path / "bad.npz", np.zeros((4, 28, 28), dtype=np.uint8))
    res = subprocess.run(cmd + [str(bad), "--metrics", "fid"], capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "arr_0 is uint8 (4, 28, 28)" in res.stderr and "Traceback" not in res.stderr


def test_metric_direction():
    assert metric_is_better("fid[mnist-cnn]", 1.0, 2.0) and not metric_is_better("fid[x]", 3.0, 2.0)
    assert metric_is_better("is[mnist-cnn]", 3.0, 2.0) and metric_is_better("classes_covered", 10, 9)
    assert metric_is_better("fid[x]", 5.0, None)


def test_conditional_run_scores_label_accuracy_with_images_aligned_to_their_labels(tmp_path, tiny, monkeypatch):
    """A generator that draws a real digit of the asked class scores the classifier's own accuracy; one that
    draws the next class scores near 0."""
    run = tmp_path / "cdcgan"
    train(tiny("cdcgan", steps=2), run, **quiet)
    ds = build_dataset(DataConfig(spec="mnist-embedded"), model_config(image_size=16, channels=1))
    by_class = [ds.tensor[ds.labels == k] for k in range(10)]

    import ganforge.apps.sampling

    real_g = ganforge.apps.sampling.load_generator(run)

    class Drawing:
        config, num_classes = real_g.config, real_g.num_classes

        def __init__(self, shift):
            self.shift = shift  # 0: obeys its labels; 1: draws the next class

        def sample(self, n, seed=0, labels=None):
            seen = {k: 0 for k in range(10)}
            out = []
            for k in labels:
                k = (k + self.shift) % 10
                out.append(by_class[k][seen[k]])
                seen[k] += 1
            return torch.stack(out)

    def accuracy(shift):
        monkeypatch.setattr(ganforge.apps.sampling, "generator_from_checkpoint", lambda *a, **k: Drawing(shift))
        return evaluate(run, "mnist-embedded", ["fid"], n=300)["metrics"]["label_accuracy[mnist-cnn]"]

    assert accuracy(0) > 0.85  # the classifier's own accuracy on 16 px digits
    assert accuracy(1) < 0.2
    assert metric_is_better("label_accuracy[mnist-cnn]", 0.9, 0.5)


def _with_final(cfg, **keys):
    return cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"final": True, "final_n": 200, **keys})})


def test_a_finished_run_is_scored_at_its_end_as_evaluate_would_score_it(tmp_path, tiny):
    """eval.final: eval.json beside the run, equal to 'ganforge evaluate RUN' with the same n, shown by the report
    and 'ganforge runs'; the last lines say the figures."""
    from ganforge.apps import runs as listing
    from ganforge.apps.report import load_run

    run, lines = tmp_path / "run", []
    train(_with_final(tiny("dcgan", steps=4, log_every=2)), run, progress=False, log=lines.append)
    stored = json.loads((run / "eval.json").read_text())
    assert stored["by"] == "eval.final" and stored["step"] == 4 and stored["n_generated"] == 200
    again = evaluate(run, "mnist-embedded", ["fid", "prc", "coverage", "copies"], n=200)
    assert again["metrics"] == pytest.approx(stored["metrics"])  # 256 training images: the copy check is on
    assert 0 <= stored["metrics"]["copies[mnist-cnn]"] <= 1 and (run / "copies.png").is_file()
    proto = stored["protocol"]
    assert proto["extractor"] == "mnist-cnn" and proto["weights"].startswith("sha256:") and len(proto["weights"]) == 71
    assert proto["n_generated"] == 200 and proto["n_reference"] == 200 and proto["reference_split"] == "all"
    assert "bilinear" in proto["resize_filter"] and "256 of 256" in proto["copy_reference"]
    assert {"fid[mnist-cnn]", "precision[mnist-cnn]", "recall[mnist-cnn]", "classes_covered"} <= set(stored["metrics"])
    said = next(l for l in lines if l.startswith("final evaluation:"))
    assert f"FID {stored['metrics']['fid[mnist-cnn]']:.2f}" in said and "classes" in said
    assert load_run(run).metrics["fid[mnist-cnn]"] == pytest.approx(stored["metrics"]["fid[mnist-cnn]"])
    assert "No evaluation yet" not in (run / "report.html").read_text()
    assert listing.describe(run).metrics["classes_covered"] == stored["metrics"]["classes_covered"]


def test_final_evaluation_is_skipped_without_an_in_domain_scorer_or_when_off(tmp_path, tiny):
    off = tmp_path / "off"
    train(tiny("dcgan", steps=2), off, **quiet)  # the tiny configs turn it off
    assert not (off / "eval.json").exists()
    points = tmp_path / "points"
    train(_with_final(tiny("mlp", steps=2).model_copy(update={"data": DataConfig(spec="ring8")})
                      .model_copy(update={"model": model_config(family="mlp", point_dim=2, z_dim=4, g_width=8,
                                                                d_width=8, dropout=0.0)})), points, **quiet)
    assert not (points / "eval.json").exists()


def test_a_translation_run_is_scored_on_its_held_out_pairs_at_its_end(tmp_path, tiny):
    run = tmp_path / "run"
    train(_with_final(tiny("pix2pix", steps=2)), run, **quiet)
    stored = json.loads((run / "eval.json").read_text())
    assert stored["by"] == "eval.final" and "accuracy" in stored["metrics"] and stored["n_generated"] <= 200
    proto = stored["protocol"]  # digit pairs: the classifier's accuracy and FID, its weights named by their hash
    assert proto["extractor"] == "mnist-cnn" and proto["weights"].startswith("sha256:")
    assert proto["n_generated"] == stored["n_generated"] and proto["reference_split"] in ("train", "test")


@pytest.mark.parametrize("family", ["cyclegan", "ssgan"])
def test_scoring_a_run_reads_its_config_once(tmp_path, tiny, monkeypatch, family):
    """The output kind picks how a run is scored; the translator (both directions) and the classifier are built
    from the config evaluate read, not from config.yaml again."""
    import ganforge.config as config

    run = tmp_path / "run"
    train(tiny(family, steps=2), run, **quiet)
    reads, real = [], config.load_run_config
    monkeypatch.setattr(config, "load_run_config", lambda *a, **k: reads.append(a) or real(*a, **k))
    evaluate(run, "mnist-embedded", ["fid"], n=50)
    assert len(reads) == 1


# ------------------------------------------------------------------------------------------------ the copy check


def _png_folder(images: np.ndarray, folder) -> str:
    folder.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(folder / f"{i:04d}.png")
    return f"folder:{folder}"


def _digits(split: str, n: int) -> np.ndarray:
    from ganforge.data import build_spec

    return viz.to_uint8(build_spec("mnist-embedded", channels=1, size=32, split=split).tensor[:n])


@pytest.mark.parametrize("data", ["digits", "colour"])
def test_the_copy_check_flags_training_images_and_passes_held_out_ones(tmp_path, data):
    """Samples that ARE training images: >= 90% flagged, a warning and the pairs drawn; images of the same
    distribution held out from training: <= 10% (the rule flags about 5% of them by construction)."""
    train, held = (_digits("train", 800), _digits("test", 300)) if data == "digits" else \
        (colour_shapes(800, seed=0), colour_shapes(300, seed=1))
    ref = _png_folder(train, tmp_path / "train")
    copies, fresh = tmp_path / "copies.npz", tmp_path / "fresh.npz"
    np.savez(copies, train[::4][:200])  # 200 of the training images, as they are
    np.savez(fresh, held[:200])
    said = []
    got = evaluate(copies, ref, ["copies"], n=200, extractor="mnist-cnn", log=said.append,
                   pictures=tmp_path / "pairs.png")
    assert got["metrics"]["copies[mnist-cnn]"] >= 0.9
    assert any("copy a training image" in s for s in said) and (tmp_path / "pairs.png").is_file()
    assert got["copies"]["n_training"] == 800 and all(p["copy"] for p in got["copies"]["closest"])
    assert got["copies"]["closest"][0]["pixel_rms"] == 0.0
    said.clear()
    new = evaluate(fresh, ref, ["copies"], n=200, extractor="mnist-cnn", log=said.append)
    assert new["metrics"]["copies[mnist-cnn]"] <= 0.1 and not any("copy a training image" in s for s in said)


def test_copy_check_math_on_features():
    """Leave-one-out yardstick by index: exact duplicates in the training set are distance 0, and a sample is a copy
    only when pixels confirm what the features say."""
    from ganforge.metrics.copies import copy_check

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(400, 8))
    pix = rng.integers(0, 256, (400, 1, 4, 4)).astype(np.uint8)
    same = copy_check(feats[:50], feats, pix[:50], pix)
    assert same.share == 1.0 and (same.nearest == np.arange(50)).all()
    other_pixels = copy_check(feats[:50], feats, 255 - pix[:50], pix)  # same features, different pictures
    assert other_pixels.share == 0.0
    fresh = copy_check(rng.normal(size=(2000, 8)), feats, rng.integers(0, 256, (2000, 1, 4, 4)).astype(np.uint8), pix)
    assert fresh.share <= 0.05 + 0.02  # at most the quantile, up to sampling noise


def test_copies_is_refused_in_periodic_evaluation():
    from ganforge.config import EvalConfig

    with pytest.raises(ValueError, match="final_metrics"):
        EvalConfig(metrics=["fid", "copies"])
    assert EvalConfig(final_metrics=["fid", "copies"]).final_metrics[-1] == "copies"


def test_a_colour_folder_run_ends_with_a_number_even_when_its_extractor_needs_a_download(tmp_path, tiny, monkeypatch):
    """eval.final on any data: a colour folder, the chosen extractor's weights absent (offline): scored with the
    offline fallback, the protocol saying which, the copy check on (64 training images)."""
    import ganforge.train.reference as reference
    from ganforge.apps.report import load_run
    from ganforge.apps.runs import describe, render

    monkeypatch.setattr(reference, "OFFLINE_FALLBACK", "random-conv")  # no weights to fit: the test stays quick
    monkeypatch.setenv("GANFORGE_INCEPTION_WEIGHTS", str(tmp_path / "absent.pth"))
    data = _png_folder(colour_shapes(64, seed=2, size=16), tmp_path / "colour")
    cfg = _with_final(tiny("dcgan", steps=2), final_n=100, extractor="inception-v3")
    cfg = cfg.model_copy(update={"data": DataConfig(spec=data),
                                 "model": cfg.model.model_copy(update={"channels": 3})})
    run, said = tmp_path / "run", []
    train(cfg, run, progress=False, log=said.append)
    stored = json.loads((run / "eval.json").read_text())
    name = stored["protocol"]["extractor"]
    assert stored["extractor"] == name and f"fid[{name}]" in stored["metrics"] and f"copies[{name}]" in stored["metrics"]
    assert stored["protocol"]["n_generated"] == 100 and stored["protocol"]["weights"] != ""
    assert "classes_covered" not in stored["metrics"] and "coverage" in stored["not_scored"]  # not the data's classes
    assert stored["copies"]["n_training"] == 64 and (run / "copies.png").is_file()
    line = next(s for s in said if s.startswith("final evaluation:"))
    assert name in line and "FID" in line
    assert name == "random-conv" and stored["protocol"]["weights"] == "seed:0"
    assert any(s.startswith("warning: extractor inception-v3 unavailable") and name in s for s in said)
    html_text = (run / "report.html").read_text()
    assert "class='headline'" in html_text and name in html_text and "copies.png" in html_text
    assert load_run(run).evaluated["protocol"]["extractor"] == name
    assert f"fid[{name}]" in render([describe(run)], tmp_path)


def test_the_protocol_names_a_seeded_extractor_by_its_seed(tmp_path):
    """No weights file: random-conv's weights are its seed, said as such; counts and split beside them."""
    ref = _png_folder(colour_shapes(60, seed=3), tmp_path / "ref")
    np.savez(tmp_path / "gen.npz", colour_shapes(40, seed=4))
    proto = evaluate(tmp_path / "gen.npz", ref, ["fid"], n=40, extractor="random-conv", log=lambda s: None)["protocol"]
    assert proto["extractor"] == "random-conv" and proto["weights"] == "seed:0" and "bilinear" in proto["resize_filter"]
    assert (proto["n_generated"], proto["n_reference"], proto["reference"], proto["reference_split"]) == \
        (40, 40, ref, "all")


def test_a_one_class_set_is_flagged_as_dropping_modes_and_the_reals_are_not(tmp_path, real_npz):
    """Every sample a real 1: each looks like the data (density ~1), together they cover a tenth of it."""
    ds = build_dataset(DataConfig(spec="mnist-embedded"), model_config(image_size=32, channels=1))
    ones = ds.tensor[ds.labels == 1]
    path = tmp_path / "ones.npz"
    viz.save_npz(ones[torch.arange(500) % len(ones)], path)
    res = evaluate(path, "mnist-embedded", ["prc"], n=500)
    div = res["diversity"]
    assert div["modes_dropped"] and div["coverage"] < 0.3 and div["density"] > 0.8
    assert div["expected_coverage"] == pytest.approx(0.969, abs=1e-3)  # 500 vs 500 at k = 5
    assert "warning: modes dropped" in format_table(res)
    full = evaluate(real_npz, "mnist-embedded", ["prc"], n=500)
    assert not full["diversity"]["modes_dropped"] and "modes dropped" not in format_table(full)
    assert "diversity" not in evaluate(real_npz, "mnist-embedded", ["fid"], n=500)  # needs prc's numbers
