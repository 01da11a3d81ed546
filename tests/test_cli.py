"""The command line end to end, as a user runs it: real processes, real exit codes, files on disk."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY = ["--set", "model.image_size=16", "--set", "model.g_width=8", "--set", "model.d_width=8",
        "--set", "model.z_dim=16", "--set", "data.limit=128", "--set", "train.threads=1", "--set", "eval.final=false",
        "--batch-size", "32",
        "--device", "cpu",
        "--quiet"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "ganforge", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    res = run("train", "dcgan-mnist", "--steps", "8", "--out", str(out), "--seed", "5", *TINY)
    assert res.returncode == 0, res.stderr
    return out


def test_train_writes_every_file_of_the_run_directory(trained):
    for name in ("config.yaml", "metrics.jsonl", "progress.gif", "losses.png", "real_vs_fake.png", "checkpoints/latest"):
        assert (trained / name).is_file(), name
    assert len(list((trained / "samples").glob("*.png"))) >= 2
    assert "seed: 5" in (trained / "config.yaml").read_text()


def test_sample_png_npz_and_folder(trained, tmp_path):
    res = run("sample", str(trained), "--n", "10", "--out", str(tmp_path / "g.png"))
    assert res.returncode == 0, res.stderr
    assert Image.open(tmp_path / "g.png").size[0] > 16
    assert run("sample", str(trained), "--n", "10", "--out", str(tmp_path / "s.npz"), "--seed", "1").returncode == 0
    arr = np.load(tmp_path / "s.npz")["arr_0"]
    assert arr.shape == (10, 16, 16, 1) and arr.dtype == np.uint8
    assert run("sample", str(trained), "--n", "10", "--out", str(tmp_path / "s2.npz"), "--seed", "1").returncode == 0
    assert np.array_equal(arr, np.load(tmp_path / "s2.npz")["arr_0"])  # --seed fixes the images
    assert run("sample", str(trained), "--n", "3", "--out", str(tmp_path / "pngs")).returncode == 0
    assert len(list((tmp_path / "pngs").glob("*.png"))) == 3


def test_resume_extends_a_run(trained, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    res = run("train", "--resume", str(copy), "--steps", "12", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "resumed" in res.stderr
    assert '"step": 12' in (copy / "metrics.jsonl").read_text().splitlines()[-1]


def test_conditional_sampling_by_label(tmp_path):
    out = tmp_path / "c"
    assert run("train", "cdcgan-mnist", "--steps", "2", "--out", str(out), *TINY).returncode == 0
    res = run("sample", str(out), "--n", "4", "--labels", "3,7", "--out", str(tmp_path / "c.npz"))
    assert res.returncode == 0, res.stderr
    assert np.load(tmp_path / "c.npz")["arr_0"].shape == (4, 16, 16, 1)


def test_presets_lists_every_preset():
    res = run("presets")
    assert res.returncode == 0
    for name in ("mnist-mlp", "dcgan-mnist", "dcgan-svhn", "dcgan-celeba", "dcgan-cifar10", "cdcgan-mnist"):
        assert name in res.stdout


def test_dry_run_validates_and_writes_nothing(tmp_path):
    res = run("train", "dcgan-celeba", "--data", "mnist-embedded", "--set", "model.channels=3", "--dry-run",
              "--device", "cpu", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "3,576,704" in res.stderr + res.stdout  # G's parameter count, the seeds' CelebA DCGAN
    assert list(tmp_path.iterdir()) == []


def _assert_user_error(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [l for l in res.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for n in needles:
        assert n in lines[0]


@pytest.mark.parametrize("args, needles", [
    (["train", "no-such-preset"], ["no-such-preset", "ganforge presets"]),
    (["train", "--set", "train.lr_g"], ["train.lr_g", "key.path=value"]),
    (["train", "--set", "train.nope=1"], ["train.nope", "unknown key"]),
    (["train", "--set", "model.image_size=30"], ["image_size"]),
    (["train", "--data", "folder:/definitely/not/here"], ["/definitely/not/here"]),
    (["train", "--data", "cifar10"], ["cifar10", "--download"]),
    (["train", "--data", "imagenet"], ["imagenet"]),
    (["sample", "/no/such/run"], ["/no/such/run"]),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, needles):
    res = run(*args, "--out", str(tmp_path / "out"), cwd=tmp_path) if args[0] == "train" else run(*args, cwd=tmp_path)
    _assert_user_error(res, *needles)
    assert list(tmp_path.iterdir()) == []


def test_empty_folder_is_rejected_before_anything_is_written(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    res = run("train", "--data", f"folder:{empty}", "--out", str(tmp_path / "out"), cwd=tmp_path)
    _assert_user_error(res, str(empty))
    assert not (tmp_path / "out").exists()


def test_folder_of_images_trains(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(40):
        mode = "RGB" if i % 2 else "L"
        shape = (20, 24, 3) if mode == "RGB" else (30, 22)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(folder / ("sub" if i % 3 else "") / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    res = run("train", "dcgan-mnist", "--data", f"folder:{folder}", "--steps", "2", "--out", str(tmp_path / "r"), *TINY,
              "--set", "model.channels=3", "--set", "data.limit=40")  # TINY's 128 is more than the folder holds
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "r" / "checkpoints" / "latest").is_file()


def test_existing_output_is_refused(trained):
    res = run("train", "--out", str(trained), *TINY)
    _assert_user_error(res, "--resume")


def test_bad_labels_exit_2(trained, tmp_path):
    _assert_user_error(run("sample", str(trained), "--labels", "a,b", "--out", str(tmp_path / "x.png")), "--labels")
    _assert_user_error(run("sample", str(trained), "--labels", "1", "--out", str(tmp_path / "x.png")), "conditional")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, names", [(["--benches", "ring9"], "'ring9'"), (["--seeds", "a,b"], "--seeds")])
def test_bench_coverage_rejects_bad_options_in_one_line(tmp_path, args, names):
    res = run("bench", "coverage", *args, "--out", str(tmp_path / "runs"))
    assert res.returncode == 2
    assert names in res.stderr and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "runs").exists()


_BREAK_CLI = '''
import importlib.abc, sys

class _NoClick(importlib.abc.MetaPathFinder):
    """As on a machine where typer no longer pulls in click."""
    def find_spec(self, name, path=None, target=None):
        if name == "click" or name.startswith("click."):
            raise ModuleNotFoundError("No module named 'click'", name=name)
        return None

sys.meta_path.insert(0, _NoClick())
import ganforge.config

def _broken(*args, **kwargs):
    raise RuntimeError("internal-failure-7f3a")

ganforge.config.preset_names = _broken
'''


def _console_script() -> Path:
    import shutil

    script = Path(sys.executable).with_name("ganforge")
    found = script if script.is_file() else shutil.which("ganforge")
    if not found:
        pytest.skip("the ganforge console script is not installed (pip install -e .)")
    return Path(found)


@pytest.mark.parametrize("args", [["presets"], ["train", "--no-such-option"]])
def test_console_script_shows_the_original_error_without_click(tmp_path, args):
    """An internal error surfaces as itself (not as a missing click), and usage errors still exit 2."""
    (tmp_path / "sitecustomize.py").write_text(_BREAK_CLI)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    res = subprocess.run([str(_console_script()), *args], capture_output=True, text=True, env=env, timeout=120)
    assert "No module named 'click'" not in res.stderr
    if args == ["presets"]:
        assert res.returncode == 1
        assert "RuntimeError: internal-failure-7f3a" in res.stderr.splitlines()[-1]
    else:
        assert res.returncode == 2 and "no-such-option" in res.stderr and "Traceback" not in res.stderr


def test_the_cli_reference_is_up_to_date():
    """docs/CLI.md is generated from the typer app: a changed command or option without regenerating fails here."""
    from ganforge import cli_docs

    assert cli_docs.DOC.read_text() == cli_docs.render(), \
        "docs/CLI.md is out of date: run python -m ganforge.cli_docs"
