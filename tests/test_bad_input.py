"""Bad input, as found from outside (issue 22) and its siblings in the other commands: one line on stderr that
names the bad value and the fix, exit code 2, no traceback, and nothing written."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ganforge.errors import UserError

from test_cli import TINY, _assert_user_error, run, trained  # noqa: F401 (trained: a fixture)
from conftest import sigint_default

UNSAFE_ADVICE = ("allow_pickle", "pickle.load", "weights_only=False", "weights_only set to False", "unsafely")


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def place(tmp_path):
    """A working folder holding one regular file (``afile``); the test checks that nothing else appears."""
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path


def _refused(res, root: Path, before: list[str], *needles: str) -> None:
    _assert_user_error(res, *needles)
    assert _listing(root) == before, "a refused command wrote something"
    assert not any(a in res.stderr for a in UNSAFE_ADVICE), res.stderr


NEEDS_PROC = pytest.mark.skipif(not Path("/proc/self").exists(), reason="no /proc on this system")


@pytest.mark.parametrize("out, needles", [
    pytest.param("/proc/x", ["/proc", "writable"], marks=NEEDS_PROC),
    ("afile/sub", ["afile", "is a file"]),
    ("afile", ["afile is a file, not a folder"]),
])
def test_train_refuses_an_output_it_cannot_write_before_loading_anything(place, out, needles):
    before = _listing(place)
    res = run("train", "dcgan-mnist", "--steps", "2", "--out", out, *TINY, cwd=place)
    _refused(res, place, before, *needles)
    assert "data:" not in res.stderr  # refused before the data were loaded


def test_a_folder_of_other_files_is_not_called_a_run(place):
    (place / "photos").mkdir()
    (place / "photos" / "a.txt").write_text("x")
    before = _listing(place)
    res = run("train", "--out", "photos", *TINY, cwd=place)
    _refused(res, place, before, "already holds files", "nothing to --resume")


@pytest.mark.parametrize("args, folder", [
    (["translate", "{run}", "--input", "x.npz", "--out", "{bad}/x.npz"], False),
    (["translate", "{run}", "--input", "x.npz", "--out", "{bad}/pngs"], True),
    (["sample", "{run}", "--out", "{bad}/s.png"], False),
    (["sample", "{run}", "--out", "{bad}/pngs"], True),
    (["mix", "{run}", "--out", "{bad}/m.png"], False),
    (["interpolate", "{run}", "--out", "{bad}/w.gif"], False),
    (["project", "{run}", "--input", "x.npz", "--out", "{bad}/p"], True),
    (["evaluate", "{run}", "--n", "10", "--out", "{bad}/e.json"], False),
    (["classify", "{run}", "--input", "x.npz", "--out", "{bad}/c.csv"], False),
    (["report", "{run}", "--out", "{bad}/r.html"], False),
    (["import-weights", "w.pt", "--preset", "dcgan-mnist", "--trust", "--out", "{bad}/imp"], True),
    (["bench", "semi", "--steps", "1", "--out", "{bad}/bench"], True),
    (["bench", "translation", "--steps", "1", "--write", "{bad}/b.md"], False),
])
@pytest.mark.parametrize("bad", [pytest.param("/proc", marks=NEEDS_PROC), "afile"])
def test_every_command_checks_its_output_first(trained, place, args, folder, bad):
    np.savez(place / "x.npz", arr_0=np.zeros((2, 16, 16, 1), np.uint8))
    (place / "w.pt").write_bytes(b"PK\x03\x04")
    before = _listing(place)
    res = run(*[a.format(run=trained, bad=bad) for a in args], cwd=place)
    _refused(res, place, before, bad)


def test_a_yaml_syntax_error_names_the_file_and_the_line(place):
    (place / "bad.yaml").write_text("model: [unclosed\n  x: :\n")
    before = _listing(place)
    _refused(run("train", "bad.yaml", cwd=place), place, before, "bad.yaml", "not valid YAML", "line 2")


def test_a_missing_yaml_is_called_missing_not_an_unknown_preset(place):
    before = _listing(place)
    res = run("train", "nothere.yaml", cwd=place)
    _refused(res, place, before, "nothere.yaml", "does not exist")
    assert "dcgan-celeba" not in res.stderr  # not the whole preset list


@pytest.mark.parametrize("command", [["sample", "{run}", "--out", "g.png"], ["evaluate", "{run}", "--n", "10"],
                                     ["train", "--resume", "{run}", "--quiet"], ["report", "{run}"]])
def test_a_garbage_run_config_is_one_line_in_every_command(trained, place, command):
    damaged = place / "damaged"
    shutil.copytree(trained, damaged)
    (damaged / "config.yaml").write_text("::: [ {\n")
    before = _listing(place)
    res = run(*[a.format(run=damaged) for a in command], cwd=place)
    _refused(res, place, before, "config.yaml", "not valid YAML", "state.json")


@pytest.mark.parametrize("out, needles", [("s.png", ["grid", ".npz"]), ("s.npz", ["memory", "--n"]),
                                          ("pngs", ["memory", "--n"])])
def test_sample_refuses_what_cannot_fit(trained, place, out, needles):
    before = _listing(place)
    _refused(run("sample", str(trained), "--n", "1000000000000", "--out", out, cwd=place), place, before, *needles)


def test_the_python_api_refuses_a_sample_that_cannot_fit(trained):
    from ganforge.apps.sampling import load_generator

    g = load_generator(trained, device="cpu")
    with pytest.raises(UserError, match="memory"):
        g.sample(10 ** 12)
    assert g.sample(4, seed=0).shape[0] == 4
    from ganforge.apps.latents import interpolation_frames

    with pytest.raises(UserError, match="memory"):
        interpolation_frames(g, [1, 2], 10 ** 12)


def test_evaluate_and_interpolate_refuse_what_cannot_fit(trained, place):
    before = _listing(place)
    _refused(run("evaluate", str(trained), "--n", "1000000000000", "--out", "e.json", cwd=place), place, before,
             "memory", "--n")
    _refused(run("interpolate", str(trained), "--frames", "100000000000", "--out", "w.gif", cwd=place), place,
             before, "memory", "--frames")


def test_runs_refuses_an_unknown_sort_key(trained):
    _assert_user_error(run("runs", str(trained.parent), "--sort", "bogus"), "--sort", "bogus", "fid")
    assert run("runs", str(trained.parent), "--sort", "fid").returncode == 0


def test_resume_refuses_another_out_or_a_preset(trained, place):
    copy = place / "copy"
    shutil.copytree(trained, copy)
    before = _listing(place)
    _refused(run("train", "--resume", "copy", "--out", "other", cwd=place), place, before, "--out other", "copy")
    _refused(run("train", "dcgan-mnist", "--resume", "copy", cwd=place), place, before, "dcgan-mnist", "--set")


def _pickled_object(path: Path) -> None:
    import pickle

    with open(path, "wb") as fh:
        pickle.dump({"G": {"weight": object()}}, fh, protocol=4)  # a class object: weights_only refuses it


@pytest.mark.parametrize("content, needles", [
    (b"hello, not weights\n", ["not a PyTorch weights file"]),
    (None, ["Python objects besides tensors", "state_dict"]),
])
def test_import_weights_says_what_the_file_is_and_never_advises_unpickling(place, content, needles):
    path = place / "w.pt"
    path.write_bytes(content) if content is not None else _pickled_object(path)
    before = _listing(place)
    res = run("import-weights", "w.pt", "--preset", "dcgan-mnist", "--trust", "--out", "imp", cwd=place)
    _refused(res, place, before, *needles)
    assert "Warning" not in res.stderr


@pytest.mark.parametrize("content, needles", [(os.urandom(600), ["not an .npz archive"]), (None, ["pickled"])])
def test_evaluate_of_a_bad_npz_never_advises_unpickling(place, content, needles):
    path = place / "x.npz"
    if content is None:
        np.savez(path, arr_0=np.array([object()], dtype=object))
    else:
        path.write_bytes(content)
    before = _listing(place)
    _refused(run("evaluate", "x.npz", "--n", "10", "--out", "e.json", cwd=place), place, before, "x.npz",
             "never pickled")


@pytest.mark.parametrize("args, needles", [(["train", "--no-such-option"], ["--no-such-option", "--help"]),
                                           (["sample"], ["RUN_DIR", "--help"]),
                                           (["no-such-command"], ["no-such-command"])])
def test_usage_errors_are_one_line(place, args, needles):
    before = _listing(place)
    res = run(*args, cwd=place)
    assert res.returncode == 2
    lines = [l for l in res.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert all(n.lower() in lines[0].lower() for n in needles), lines[0]
    assert _listing(place) == before


def test_the_corrupt_checkpoint_fallback_warns_on_stderr(trained, place):
    from ganforge.checkpoint import list_checkpoints

    copy = place / "copy"
    shutil.copytree(trained, copy)
    newest = list_checkpoints(copy / "checkpoints")[0]
    weights = next(newest.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    res = run("sample", str(copy), "--n", "4", "--out", str(place / "g.png"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(place / "g.png")
    assert "skipping" in res.stderr and newest.name in res.stderr


def test_ctrl_c_before_the_first_checkpoint_removes_the_run_and_says_so(place):
    """SIGINT as soon as the run writes its config (before its step-0 checkpoint): the folder goes, one line says
    so, and the same --out works again (no dead end)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "ganforge", "train", "dcgan-mnist", "--steps", "200", "--out", "D",
                             *TINY], cwd=place, env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_default)
    deadline = time.monotonic() + 120
    while not (place / "D" / "config.yaml").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    if (place / "D" / "checkpoints").is_dir():  # the signal came after the step-0 checkpoint: a resumable run
        assert "--resume" in err
        return
    assert not (place / "D").exists()
    assert "removed D" in err.strip().splitlines()[-1] and "same --out" in err
    assert run("train", "dcgan-mnist", "--steps", "1", "--out", "D", *TINY, cwd=place).returncode == 0


@pytest.mark.parametrize("existed", [False, True])
def test_an_interrupted_start_leaves_no_dead_end(tmp_path, monkeypatch, tiny, existed):
    """In process, deterministic: the interrupt strikes inside the loop, before its first checkpoint."""
    from ganforge.train import loop as loop_mod

    def interrupted(self, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop_mod.Run, "loop", interrupted)
    out = tmp_path / "run"
    if existed:
        out.mkdir()
    with pytest.raises(KeyboardInterrupt, match="before the first checkpoint"):
        loop_mod.train(tiny("dcgan", steps=2), out, progress=False, log=lambda s: None)
    assert out.is_dir() == existed and (not existed or not any(out.iterdir()))


@pytest.mark.parametrize("sizes", ["a", "7", "512"])
def test_bench_throughput_checks_its_sizes(place, sizes):
    before = _listing(place)
    _refused(run("bench", "throughput", "--sizes", sizes, "--device", "cpu", cwd=place), place, before, "--sizes")


def test_a_refused_resume_is_one_line(trained, place):
    """The run's description (data, models, budget) comes after the checks, so a refusal stands alone."""
    copy = place / "copy"
    shutil.copytree(trained, copy)
    before = _listing(place)
    _refused(run("train", "--resume", "copy", "--set", "model.g_width=99", "--quiet", cwd=place), place, before,
             "model.g_width", "--force")
