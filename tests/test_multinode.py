"""Several machines, simulated on localhost with gloo (issue 26): torchrun --nnodes 2 --nproc-per-node 1 equals one
process with the same global batch; a worker killed mid-run stops its peer within train.dist_timeout with one line
naming it, or, under --max-restarts 1, the job restarts, resumes from the newest checkpoint and ends as an
uninterrupted run."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from ganforge.checkpoint import load_latest
from ganforge.config import validate
from ganforge.train import train
from test_distributed import _free_port, mlp_config, quiet

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
WORKER = Path(__file__).with_name("elastic_worker.py")
STEPS = 9  # 96 images / 32: 3 steps an epoch, a checkpoint after each


def _cfg(tmp: Path, **train_kw) -> Path:
    path = tmp / "cfg.yaml"
    cfg = {**mlp_config(steps=STEPS, **train_kw), "eval": {"final": False}}  # the loop's promise, not evaluate's
    path.write_text(yaml.safe_dump(cfg))
    return path


def _launch(tmp: Path, out: Path, nodes_args: list[list[str]], env_extra: dict | None = None,
            timeout: float = 240) -> list[subprocess.CompletedProcess]:
    """One torchrun per simulated node, all started at once; their results once all have ended."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    procs = []
    for i, args in enumerate(nodes_args):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1", *args,
               str(WORKER), "train", str(tmp / "cfg.yaml"), "--out", str(out), "--quiet"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp,
                                      env=env))
    results = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"a simulated node did not finish in {timeout:.0f}s: a hang")
        results.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return results


def _static(port: int) -> list[list[str]]:
    return [["--node-rank", str(r), "--master-addr", "127.0.0.1", "--master-port", str(port)] for r in (0, 1)]


def _elastic(port: int) -> list[list[str]]:
    return [["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "ganforge-test",
             "--max-restarts", "1"]] * 2


def _weights(run: Path) -> dict[str, torch.Tensor]:
    ck = load_latest(run / "checkpoints")
    assert ck.state["step"] == STEPS
    return ck.weights


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 2-node x 1-process run, and the 1-process run of the same global batch."""
    tmp = tmp_path_factory.mktemp("multinode")
    _cfg(tmp)
    res = _launch(tmp, tmp / "two-nodes", _static(_free_port()))
    for r in res:
        assert r.returncode == 0, r.stderr[-3000:]
    single = tmp / "single"
    train(validate(mlp_config(steps=STEPS)), single, **quiet)
    return tmp


def test_two_nodes_of_one_process_equal_one_process(straight):
    two, one = _weights(straight / "two-nodes"), _weights(straight / "single")
    assert two.keys() == one.keys()
    for k in one:
        if k.startswith(("G.", "D.")) or ".weight" in k or ".bias" in k:
            torch.testing.assert_close(two[k], one[k], atol=1e-5, rtol=0, msg=lambda m: f"{k}: {m}")


def test_a_lost_worker_stops_its_peer_within_dist_timeout_naming_it(tmp_path):
    _cfg(tmp_path, dist_timeout=15)
    marker = tmp_path / "killed"
    t0 = time.monotonic()
    node0, node1 = _launch(tmp_path, tmp_path / "run", _static(_free_port()),
                           {"KILL_RANK": "1", "KILL_AT_STEP": "5", "KILL_MARKER": str(marker)}, timeout=120)
    assert marker.exists() and node1.returncode != 0
    assert node0.returncode != 0
    lines = [l for l in node0.stderr.splitlines() if l.startswith("error: ")]
    assert lines and "lost rank 1 of 2" in lines[0], node0.stderr[-3000:]
    worker = node0.stderr.split(lines[0])[0]  # the worker's own output; torchrun's report of it follows
    assert "Traceback" not in worker, node0.stderr[-3000:]
    assert time.monotonic() - t0 < 100


def test_max_restarts_resumes_from_the_newest_checkpoint_and_ends_as_a_straight_run(tmp_path, straight):
    _cfg(tmp_path)
    marker = tmp_path / "killed"
    res = _launch(tmp_path, tmp_path / "run", _elastic(_free_port()),
                  {"KILL_RANK": "1", "KILL_AT_STEP": "5", "KILL_MARKER": str(marker)})
    assert marker.exists()
    for r in res:
        assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed" in "".join(r.stderr for r in res)
    a, b = _weights(straight / "two-nodes"), _weights(tmp_path / "run")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_accelerate_launch_with_two_machines_equals_one_process(tmp_path, straight):
    """The documented multi-node accelerate command, each "machine" a process on localhost (gloo)."""
    _cfg(tmp_path)
    port, out = _free_port(), tmp_path / "accelerate"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
                               "--machine_rank", str(rank), "--num_processes", "2", "--main_process_ip", "127.0.0.1",
                               "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
                               "-m", "ganforge", "train", str(tmp_path / "cfg.yaml"), "--out", str(out), "--quiet",
                               "--device", "cpu"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
             for rank in (0, 1)]
    for p in procs:
        try:
            _, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a simulated machine did not finish in 240 s: a hang")
        assert p.returncode == 0, err[-3000:]
    two, one = _weights(out), _weights(straight / "single")
    for k in one:
        if k.startswith(("G.", "D.")) or ".weight" in k or ".bias" in k:
            torch.testing.assert_close(two[k], one[k], atol=1e-5, rtol=0, msg=lambda m: f"{k}: {m}")
