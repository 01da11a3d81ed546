"""ganforge runs: every status from the files a run leaves, best metrics, sorting, and the CLI table."""
from __future__ import annotations

import json
import os
import time

from typer.testing import CliRunner

from ganforge.apps import runs as listing
from ganforge.cli import app
from ganforge.train import train


def _fake_run(root, name, *, reason=None, records=(), steps=100, age_s=3600.0, eval_json=None):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"name: {name}-preset\nmodel: {{family: dcgan}}\ntrain: {{steps: {steps}}}\n")
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 1, "loss"\n')
    if reason is not None:
        ck = run / "checkpoints" / "ckpt-e0001-s00000050"
        ck.mkdir(parents=True)
        (ck / "state.json").write_text(json.dumps({"reason": reason, "step": 50}))
        (run / "checkpoints" / "latest").write_text(ck.name + "\n")
    if eval_json is not None:
        (run / "eval.json").write_text(json.dumps({"metrics": eval_json}))
    old = time.time() - age_s
    for p in run.rglob("*"):
        os.utime(p, (old, old))
    return run


def test_statuses_metrics_and_sorting(tmp_path):
    evals = [{"step": 20, "eval": {"fid": 40.0}}, {"step": 40, "eval": {"fid": 30.0}}, {"step": 60, "eval": {"fid": 35.0}}]
    _fake_run(tmp_path, "done", reason="final", records=[{"step": 100}, *evals])
    _fake_run(tmp_path, "killed", reason="epoch", records=[{"step": 50}])
    _fake_run(tmp_path, "live", reason="epoch", records=[{"step": 70}], age_s=5)
    _fake_run(tmp_path, "nan", reason="epoch", records=[{"step": 9, "event": "stop", "message": "diverged"}])
    _fake_run(tmp_path, "crashed", records=[])
    _fake_run(tmp_path / "deeper", "scored", reason="final", records=[{"step": 100}],
              eval_json={"fid[mnist-cnn]": 12.5, "precision[mnist-cnn]": 0.7})
    rows = {r.path.name: r for r in map(listing.describe, listing.find_runs(tmp_path))}
    assert {k: r.status for k, r in rows.items()} == {
        "done": "finished", "killed": "interrupted", "live": "running", "nan": "failed", "crashed": "failed",
        "scored": "finished"}
    assert rows["done"].metrics == {"fid": 30.0} and rows["done"].steps == 100  # the best periodic FID
    assert rows["killed"].steps == 50 and rows["scored"].metrics["fid[mnist-cnn]"] == 12.5
    ordered = [r.path.name for r in listing.sort_rows(list(rows.values()), "fid")]
    assert ordered[:2] == ["scored", "done"]  # lowest FID first, runs without one after
    assert [r.path.name for r in listing.sort_rows(list(rows.values()), "precision")][0] == "scored"


def test_cli_lists_a_real_run(tmp_path, tiny):
    train(tiny("dcgan", steps=4), tmp_path / "runs" / "a", progress=False, log=lambda s: None)
    train(tiny("dcgan", steps=6), tmp_path / "runs" / "b", progress=False, log=lambda s: None, stop_after_steps=2)
    old = time.time() - 3600
    for p in (tmp_path / "runs" / "b").rglob("*"):
        os.utime(p, (old, old))
    res = CliRunner().invoke(app, ["runs", str(tmp_path / "runs"), "--sort", "name"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split()[:5] == ["run", "preset", "family", "steps", "status"]
    assert lines[1].split()[0] == "a" and "4 / 6" not in lines[1] and lines[1].rstrip().endswith("finished")
    assert lines[2].split()[0] == "b" and "2 / 6" in lines[2] and "interrupted" in lines[2]


def test_cli_says_when_there_is_nothing(tmp_path):
    res = CliRunner().invoke(app, ["runs", str(tmp_path)])
    assert res.exit_code == 0 and "no runs under" in res.output
