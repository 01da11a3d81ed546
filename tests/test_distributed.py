"""Data-parallel training on CPU (gloo): 2 processes hold identical replicas, match one process with the same global
batch, write only from rank 0 and resume exactly; mixed precision trains and keeps its loss scales."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from conftest import FAMILIES

import ganforge.train.loop as loop
import ganforge.families.noise_to_image as gan_family
from ganforge.checkpoint import load_latest
from ganforge.config import validate
from ganforge.errors import UserError
from ganforge.train import train
from ganforge.train.batches import BatchSource
from ganforge.train.distributed import Dist

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")

quiet = dict(progress=False, log=lambda s: None)
WORLD = 2


def mlp_config(**train_kw) -> dict:
    """The tiny MLP of conftest, without BatchNorm or dropout: nothing that differs per rank."""
    train_cfg = {"steps": 6, "epochs": None, "batch_size": 32, "log_every": 2, "n_fixed": 16, "seed": 3, "threads": 1,
                 "device": "cpu"}  # CPU processes over gloo, on any machine
    train_cfg.update(train_kw)
    return {"name": "tiny-mlp", "data": {"spec": "mnist-embedded", "limit": 96},  # 3 steps per epoch
            "model": {"family": "mlp", "image_size": 16, "channels": 1, "z_dim": 16, "g_width": 16, "d_width": 16,
                      "dropout": 0.0, "batch_norm": False},
            "train": train_cfg,
            "guard": {"class_samples": 0}}  # 6 steps draw noise: the class-fade watch would rightly warn (conftest too)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _state(models) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.detach().cpu().contiguous().clone() for name, m in models.items()
            for k, v in m.state_dict().items()}


def _worker(rank: int, root: str, cfg_data: dict, ports: tuple[int, int]) -> None:
    """One rank, as accelerate launch / torchrun would start it (environment variables), in its own cwd."""
    root = Path(root)
    os.chdir(root / f"cwd{rank}")  # anything written relative to the cwd would show here
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(ports[0]))
    torch.set_num_threads(1)
    cfg = validate(cfg_data)
    summary = train(cfg, root / "dp", **quiet)  # makes and destroys its own process group
    assert summary.steps == cfg.train.steps
    save_file(_state(summary.models), str(root / "dumps" / f"rank{rank}.safetensors"))

    # stop mid-epoch, resume; a process group made by the caller is used as it is
    os.environ["MASTER_PORT"] = str(ports[1])
    torch.distributed.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        stopped = train(cfg, root / "dp-resumed", stop_after_steps=4, **quiet)
        assert stopped.stopped and stopped.steps == 4
        resumed = train(cfg, root / "dp-resumed", resume=True, **quiet)
        assert resumed.steps == cfg.train.steps
        assert torch.distributed.is_initialized()

        # a NaN loss on rank 1 only, with finite gradients: every rank skips, then all roll back together
        if rank == 1:
            real, calls = gan_family.g_loss, {"n": 0}

            def g_loss(logits, kind, *paired):
                calls["n"] += 1
                return real(logits, kind, *paired) + (float("nan") if 3 <= calls["n"] <= 5 else 0.0)

            gan_family.g_loss = g_loss
        nan_run = train(validate({**cfg_data, "guard": {**cfg_data["guard"], "max_skips": 3}}), root / "dp-nan", **quiet)
        assert nan_run.steps == cfg.train.steps
        save_file(_state(nan_run.models), str(root / "dumps" / f"nan{rank}.safetensors"))

        # SyncBatchNorm has no CPU implementation: refused on every rank, before anything is written
        sync_bn = {**cfg_data, "model": {**cfg_data["model"], "batch_norm": True}}
        sync_bn["train"] = {**cfg_data["train"], "sync_batchnorm": True}
        with pytest.raises(UserError, match="sync_batchnorm needs CUDA"):
            train(validate(sync_bn), root / "dp-syncbn", **quiet)
    finally:
        torch.distributed.destroy_process_group()


def _spawn(root: Path, cfg_data: dict, timeout: float = 180) -> None:
    ctx = mp.start_processes(_worker, args=(str(root), cfg_data, (_free_port(), _free_port())), nprocs=WORLD,
                             join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the {WORLD} training processes did not finish in {timeout:.0f}s")


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*"))


def _metrics(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(l).items() if k not in ("img_s", "time")}
            for l in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("train_kw", [{}, {"loss": "rpgan", "r1_gamma": 0.1, "r2_gamma": 0.1}],
                         ids=["bce", "rpgan-r1-r2"])  # rpgan: reals paired with fakes rank by rank, both penalties
def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path, train_kw):
    cfg_data = mlp_config(**train_kw)
    for d in ("cwd0", "cwd1", "dumps"):
        (tmp_path / d).mkdir()
    _spawn(tmp_path, cfg_data)
    single = train(validate(cfg_data), tmp_path / "single", **quiet)

    # (a) the replicas are identical, bit for bit
    r0, r1 = (load_file(str(tmp_path / "dumps" / f"rank{r}.safetensors")) for r in range(WORLD))
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k

    # (b) ... and equal to one process with the same global batch, up to float rounding
    one = _state(single.models)
    assert one.keys() == r0.keys()
    for k in one:
        torch.testing.assert_close(r0[k], one[k], atol=1e-5, rtol=0, msg=lambda m: f"{k}: {m}")
    dp, sp = _metrics(tmp_path / "dp"), _metrics(tmp_path / "single")
    assert [r["step"] for r in dp] == [r["step"] for r in sp] == [2, 4, 6]
    for a, b in zip(dp, sp):  # the logged statistics are the global batch's, averaged over the ranks
        for key in ("loss_d", "loss_g", "d_real", "d_fake", "skipped"):
            assert a[key] == pytest.approx(b[key], abs=1e-4), key

    # (c) only rank 0 wrote, and it wrote what a one-process run writes
    assert _files(tmp_path / "dp") == _files(tmp_path / "single")
    assert not any((tmp_path / "cwd0").iterdir()) and not any((tmp_path / "cwd1").iterdir())

    # NaNs on one rank: the same skips and rollback on both, identical replicas after it
    n0, n1 = (load_file(str(tmp_path / "dumps" / f"nan{r}.safetensors")) for r in range(WORLD))
    for k in n0:
        assert torch.equal(n0[k], n1[k]), k
    events = [r["event"] for r in map(json.loads, (tmp_path / "dp-nan" / "metrics.jsonl").read_text().splitlines())
              if "event" in r]
    assert events == ["rollback"]
    assert not (tmp_path / "dp-syncbn").exists()

    # (d) stopped at step 4 and resumed: the same weights, bit for bit, as the straight 2-process run
    a, b = load_latest(tmp_path / "dp" / "checkpoints"), load_latest(tmp_path / "dp-resumed" / "checkpoints")
    assert b.state["step"] == 6
    for k in a.weights:
        assert torch.equal(a.weights[k], b.weights[k]), k
    resumed = _metrics(tmp_path / "dp-resumed")
    assert [r["step"] for r in resumed] == [2, 4, 6]
    for x, y in zip(dp, resumed):
        for key in ("loss_d", "loss_g", "d_real", "d_fake"):
            assert x[key] == pytest.approx(y[key], abs=1e-4), key


def test_each_rank_takes_its_slice_of_every_global_batch():
    class Data:
        tensor = torch.arange(40).float()[:, None]
        labels = torch.arange(40)

        def __len__(self):
            return 40

    whole = [b[0][0] for b in BatchSource(Data(), 8, seed=1).epoch(0)]
    parts = [[b[0][0] for b in BatchSource(Data(), 8, seed=1, rank=r, world_size=2).epoch(0, start_step=0)]
             for r in range(2)]
    assert len(whole) == len(parts[0]) == len(parts[1]) == 5
    for w, p0, p1 in zip(whole, *parts):
        assert torch.equal(torch.cat([p0, p1]), w)
    with pytest.raises(UserError, match="multiple of"):
        BatchSource(Data(), 9, seed=1, rank=0, world_size=2)
    with pytest.raises(UserError, match="global batch"):
        Dist(rank=0, world_size=4).local_batch(32, multiple=3)
    assert Dist(rank=1, world_size=4).local_batch(32, multiple=2) == 8


def test_bf16_trains_on_cpu(tmp_path, tiny):
    summary = train(tiny("dcgan", steps=2, precision="bf16", log_every=1), tmp_path / "run", **quiet)
    assert summary.steps == 2
    for rec in _metrics(tmp_path / "run"):
        for key in ("loss_d", "loss_g", "d_real", "d_fake"):
            assert torch.isfinite(torch.tensor(rec[key])), (key, rec)
        assert rec["skipped"] == 0
    assert all(p.dtype == torch.float32 for p in summary.models["G"].parameters())


def test_fp16_keeps_its_loss_scales_across_resume(tmp_path, tiny, monkeypatch):
    monkeypatch.setattr(loop, "FP16_DEVICES", ("cuda", "cpu"))  # CPU autocast runs float16 too: test it here
    cfg = tiny("mlp", steps=6, precision="fp16")
    train(cfg, tmp_path / "straight", **quiet)
    train(cfg, tmp_path / "resumed", stop_after_steps=4, **quiet)
    assert load_latest(tmp_path / "resumed" / "checkpoints").state["scalers"]["d"]["_growth_tracker"] == 4
    train(cfg, tmp_path / "resumed", resume=True, **quiet)
    a, b = load_latest(tmp_path / "straight" / "checkpoints"), load_latest(tmp_path / "resumed" / "checkpoints")
    assert b.state["scalers"] == a.state["scalers"]
    assert b.state["scalers"]["g"]["_growth_tracker"] == 6 and b.state["scalers"]["g"]["scale"] == 65536.0
    for k in a.weights:
        assert torch.equal(a.weights[k], b.weights[k]), k


def test_fp16_needs_cuda(tmp_path, tiny):
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        train(tiny("mlp", precision="fp16", device="cpu"), tmp_path / "a", **quiet)
    assert not (tmp_path / "a").exists()


def test_accelerate_launch_runs_two_cpu_processes_like_one(tmp_path):
    """The documented launcher, installed with the package: 2 CPU processes (gloo) train what one process trains."""
    import subprocess
    import sys

    import yaml

    cfg_data = mlp_config()
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg_data))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(WORLD),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()),
           "-m", "ganforge", "train", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "launched"), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"data-parallel: {WORLD} processes" in res.stderr
    from ganforge.apps.training import train as train_as_the_cli_does  # the run, then eval.json and report.html

    train_as_the_cli_does(validate(cfg_data), tmp_path / "single", **quiet)
    launched, single = _metrics(tmp_path / "launched"), _metrics(tmp_path / "single")
    assert [r["step"] for r in launched] == [r["step"] for r in single] == [2, 4, 6]
    for a, b in zip(launched, single):
        for key in ("loss_d", "loss_g", "d_real", "d_fake"):
            assert a[key] == pytest.approx(b[key], abs=1e-4), key
    assert _files(tmp_path / "launched") == _files(tmp_path / "single")


def _family_worker(rank: int, root: str, family: str, port: int) -> None:
    """One rank of a short run of ``family``: its parameters are dumped for comparison."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import tiny_config

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    summary = train(tiny_config(family, steps=4), Path(root) / "dp", **quiet)
    params = {f"{name}.{k}": p.detach().cpu().contiguous().clone() for name, m in summary.models.items()
              for k, p in m.named_parameters()}
    save_file(params, str(Path(root) / f"params{rank}.safetensors"))


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "mlp"])  # mlp: the full test above
def test_two_processes_keep_every_family_in_step(tmp_path, family):
    """Every family trains data-parallel: gradients averaged, so both replicas hold the same parameters (BatchNorm
    statistics stay per process, as in PyTorch's DDP), and only rank 0 writes the run directory."""
    ctx = mp.start_processes(_family_worker, args=(str(tmp_path), family, _free_port()), nprocs=WORLD, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + 180
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the {WORLD} processes did not finish")
    p0, p1 = (load_file(str(tmp_path / f"params{r}.safetensors")) for r in range(WORLD))
    assert p0.keys() == p1.keys() and any(k.startswith("D") for k in p0)
    for k in p0:
        assert torch.equal(p0[k], p1[k]), k
    assert [r["step"] for r in _metrics(tmp_path / "dp")] == [2, 4]
