"""ganforge export (issue 25): every generating or translating family as ONNX, TorchScript and a safetensors folder,
each reproducing what ganforge itself samples or translates on the same inputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from test_cli import _assert_user_error, run
from ganforge.apps.export import export
from ganforge.apps.sampling import load_generator
from ganforge.apps.translate import load_translator
from ganforge.train import train

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

FAMILIES = ["mlp", "dcgan", "cdcgan", "ssgan", "progan", "stylegan", "r3gan", "pix2pix", "cyclegan"]
TRANSLATORS = {"pix2pix": ["AtoB"], "cyclegan": ["AtoB", "BtoA"]}
TOL = 1e-4
quiet = dict(progress=False, log=lambda s: None)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny run per family (dcgan keeps an EMA generator with its BatchNorm refresh), trained on first use."""
    root, made = tmp_path_factory.mktemp("export-runs"), {}

    def get(family: str) -> Path:
        if family not in made:
            extra = {"ema": {"enabled": True, "decay": 0.9}} if family == "dcgan" else {}
            train(tiny_config(family, steps=4, **extra), root / family, **quiet)
            made[family] = root / family
        return made[family]

    return get


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    """``exported(family, format)``: the folder ``ganforge export`` wrote (once per pair)."""
    root, made = tmp_path_factory.mktemp("exports"), {}

    def get(family: str, fmt: str) -> Path:
        if (family, fmt) not in made:
            out = root / f"{family}-{fmt}"
            meta = export(runs(family), fmt, out, log=lambda s: None)
            assert all(g["check"]["ok"] for g in meta["graphs"].values()), meta["graphs"]
            made[family, fmt] = out
        return made[family, fmt]

    return get


def expected(family: str, run_dir: Path, n: int, seed: int) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
    """graph -> (inputs, what ganforge itself gives for them): sample / w_of / synthesize / the translator."""
    if family in TRANSLATORS:
        x = torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        return {d: ({"image": x.numpy()}, load_translator(run_dir, d)(x).numpy()) for d in TRANSLATORS[family]}
    g = load_generator(run_dir)
    z = g.draw_z(n, seed)
    if family == "stylegan":
        psi = np.full(n, 0.7, np.float32)
        w = g.w_of(z, 0.7)
        ws = g.module.broadcast(w).clone()
        ws[:, 2:] = g.w_of(g.draw_z(n, seed + 1), 0.7)[:, None]  # mixed styles
        return {"generator": ({"z": z.numpy(), "psi": psi}, g.sample(n, z=z, truncation=0.7).numpy()),
                "mapping": ({"z": z.numpy(), "psi": psi}, w.numpy()),
                "synthesis": ({"ws": ws.numpy()}, g.synthesize(ws).numpy())}
    feed = {"z": z.numpy()}
    if family == "cdcgan":
        feed["label"] = (np.arange(n) % g.num_classes).astype(np.int64)
    return {"generator": (feed, g.sample(n, seed=seed).numpy())}


@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_matches_ganforge_at_batch_1_and_5(family, runs, exported):
    out = exported(family, "onnx")
    meta = json.loads((out / "config.json").read_text())
    assert {"README.md", "config.json", "reference.npz"} <= {p.name for p in out.iterdir()}
    for n in (1, 5):
        for graph, (feed, want) in expected(family, runs(family), n, seed=7).items():
            session = ort.InferenceSession(str(out / f"{graph}.onnx"), providers=["CPUExecutionProvider"])
            got = session.run(None, feed)[0]
            assert got.shape == want.shape
            assert np.abs(got - want).max() <= TOL, (family, graph, n)
            assert meta["graphs"][graph]["check"]["max_abs_error"] <= TOL


@pytest.mark.parametrize("family", FAMILIES)
def test_torchscript_loads_with_plain_torch_and_matches(family, runs, exported):
    out = exported(family, "torchscript")
    for graph, (feed, want) in expected(family, runs(family), 5, seed=8).items():
        model = torch.jit.load(str(out / f"{graph}.pt"))
        with torch.no_grad():
            got = model(*(torch.from_numpy(v) for v in feed.values())).numpy()
        assert np.abs(got - want).max() <= TOL, (family, graph)


@pytest.mark.parametrize("family", FAMILIES)
def test_folder_loads_through_ganforge_and_samples_the_same(family, runs, exported):
    out = exported(family, "folder")
    assert (out / "model.safetensors").is_file() and "## How to use it" in (out / "README.md").read_text()
    if family in TRANSLATORS:
        x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
        for d in TRANSLATORS[family]:
            assert torch.equal(load_translator(out, d)(x), load_translator(runs(family), d)(x))
        return
    kw = {"truncation": 0.7} if family == "stylegan" else {}
    assert torch.equal(load_generator(out).sample(6, seed=3, **kw), load_generator(runs(family)).sample(6, seed=3, **kw))


ORT_ONLY = """
import sys
sys.modules["torch"] = None  # neither torch nor ganforge may be imported
sys.modules["ganforge"] = None
import numpy as np
import onnxruntime as ort
folder, graph, saved = sys.argv[1:4]
ref = dict(np.load(saved))
session = ort.InferenceSession(f"{folder}/{graph}.onnx", providers=["CPUExecutionProvider"])
feed = {k: v for k, v in ref.items() if k != "want"}
print(float(np.abs(session.run(None, feed)[0] - ref["want"]).max()))
"""


@pytest.mark.parametrize("family, graph", [("cdcgan", "generator"), ("stylegan", "synthesis"), ("cyclegan", "BtoA")])
def test_onnxruntime_alone_reproduces_the_images(family, graph, runs, exported, tmp_path):
    out = exported(family, "onnx")
    feed, want = expected(family, runs(family), 3, seed=11)[graph]
    np.savez(tmp_path / "saved.npz", want=want, **feed)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    res = subprocess.run([sys.executable, "-I", "-c", ORT_ONLY, str(out), graph, str(tmp_path / "saved.npz")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert float(res.stdout.strip()) <= TOL


def test_reference_npz_and_card_describe_the_export(exported):
    out = exported("stylegan", "onnx")
    meta = json.loads((out / "config.json").read_text())
    assert list(meta["graphs"]) == ["generator", "mapping", "synthesis"]
    assert meta["graphs"]["generator"]["inputs"]["psi"] == {"shape": ["batch"], "dtype": "float32"}
    assert meta["run_config"]["model"]["family"] == "stylegan" and meta["z_dim"] == 16
    ref = np.load(out / "reference.npz")
    assert ref["generator.z"].shape == (3, 16) and ref["generator.output"].shape == (3, 1, 16, 16)
    card = (out / "README.md").read_text()
    assert "torch.randn(n, 16, generator=torch.Generator().manual_seed(seed))" in card and "onnxruntime" in card


def test_cli_export_writes_the_folder_and_prints_the_check(runs, tmp_path):
    res = run("export", str(runs("cdcgan")), "--format", "torchscript", "--out", str(tmp_path / "ts"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(tmp_path / "ts") and "max abs error" in res.stderr and ": ok" in res.stderr
    assert json.loads((tmp_path / "ts" / "config.json").read_text())["graphs"]["generator"]["inputs"]["label"] == \
        {"shape": ["batch"], "dtype": "int64"}


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("case", ["no-run", "no-checkpoint", "format", "full-out"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, runs, tmp_path):
    run_dir, fmt, out = str(runs("dcgan")), "onnx", tmp_path / "new" / "out"
    if case == "no-run":
        run_dir, needle = str(tmp_path / "nope"), "does not exist"
    elif case == "no-checkpoint":
        empty = tmp_path / "empty"
        empty.mkdir()
        (empty / "config.yaml").write_text((Path(run_dir) / "config.yaml").read_text())
        run_dir, needle = str(empty), "no checkpoint"
    elif case == "format":
        fmt, needle = "tflite", "choose one of onnx, torchscript, folder"
    else:
        out = tmp_path / "full"
        out.mkdir()
        (out / "x.txt").write_text("x")
        needle = "already holds files"
    before = _listing(tmp_path)
    res = run("export", run_dir, "--format", fmt, "--out", str(out))
    _assert_user_error(res, needle)
    assert _listing(tmp_path) == before


def test_missing_onnx_says_how_to_install_it(runs, tmp_path):
    """An interpreter where onnxruntime cannot be imported: one line naming the extra."""
    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "sitecustomize.py").write_text("import sys\nsys.modules['onnxruntime'] = None\n")
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path / "block"), os.environ.get("PYTHONPATH")])))
    res = subprocess.run([sys.executable, "-m", "ganforge", "export", str(runs("dcgan")), "--format", "onnx",
                          "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=300)
    _assert_user_error(res, "pip install 'ganforge[export]'")
    assert not (tmp_path / "o").exists()


def test_the_card_carries_the_runs_metrics_and_an_onnx_folder_is_no_generator(runs, exported, tmp_path):
    import shutil

    from ganforge.errors import UserError

    run_dir = tmp_path / "scored"
    shutil.copytree(runs("ssgan"), run_dir)
    (run_dir / "eval.json").write_text(json.dumps({"extractor": "mnist-cnn", "n_generated": 100, "n_reference": 100,
                                                   "ref": "mnist-embedded", "metrics": {"fid": 12.5}}))
    export(run_dir, "folder", tmp_path / "out", log=lambda s: None)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| fid | 12.5 |" in card and "mnist-cnn" in card and "| training steps | 4 |" in card
    with pytest.raises(UserError, match="without model.safetensors"):
        load_generator(exported("ssgan", "onnx"))
