"""``ganforge runs [DIR]``: every run directory under DIR as one table row: what it trains, how far, how good, and
whether it finished.

Read from the files a run leaves (``config.yaml``, ``metrics.jsonl``, the newest checkpoint's ``state.json``,
``eval.json``), never from the weights, so listing hundreds of runs takes a moment. Status:

* ``finished``: the newest checkpoint is the final one;
* ``failed``: the run logged a ``stop`` event (diverged after its rollbacks, or a collapse with
  ``guard.on_collapse=stop``), or it left no checkpoint at all;
* ``running``: not finished, and ``metrics.jsonl`` changed in the last ``RUNNING_WINDOW_S`` seconds;
* ``interrupted``: any other unfinished run (stopped by a signal, killed, a machine that went away):
  ``ganforge train --resume DIR`` continues it exactly.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from ganforge.errors import UserError
from ganforge.io_utils import read_records
from ganforge.metrics.registry import OUTPUTS, base_name, higher_is_better

RUNNING_WINDOW_S = 120.0
MAX_DEPTH = 3  # how deep under DIR run directories are looked for


@dataclass
class RunRow:
    path: Path
    preset: str  # with "<- SOURCE" for a fine-tuned run (--init-from)
    family: str
    steps: int
    planned: str  # "3,500" or "10 epochs"
    status: str
    metrics: dict[str, float] = field(default_factory=dict)  # best periodic value, or ganforge evaluate's
    updated: float = 0.0  # newest modification time of the run's logs


def find_runs(root: Path, depth: int = MAX_DEPTH) -> list[Path]:
    """Directories under ``root`` (itself included) holding a ``config.yaml`` and a ``metrics.jsonl`` or
    ``checkpoints``; a run's own sub-folders are not searched."""
    root = Path(root)
    if (root / "config.yaml").is_file() and ((root / "metrics.jsonl").exists() or (root / "checkpoints").is_dir()):
        return [root]
    if depth == 0 or not root.is_dir():
        return []
    found: list[Path] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found += find_runs(child, depth - 1)
    return found


def _latest_state(run: Path) -> Optional[dict]:
    pointer = run / "checkpoints" / "latest"
    try:
        name = pointer.read_text().strip()
        return json.loads((run / "checkpoints" / name / "state.json").read_text())
    except (OSError, ValueError):
        return None


def best_metrics(records: list[dict], evaluated: Optional[dict]) -> dict[str, float]:
    """``ganforge evaluate``'s figures when the run has an ``eval.json``; else the best of each periodic metric."""
    if evaluated:
        return {k: float(v) for k, v in evaluated.get("metrics", {}).items() if isinstance(v, (int, float))}
    best: dict[str, float] = {}
    for rec in records:
        for k, v in (rec.get("eval") or {}).items():
            if isinstance(v, (int, float)) and math.isfinite(v) and (k not in best or better(k, v, best[k])):
                best[k] = float(v)
    return best


def better(name: str, new: float, old: float) -> bool:
    return new > old if higher_is_better(name) else new < old


def run_status(records: list[dict], state: Optional[dict], updated: float, now: float) -> str:
    if state is not None and state.get("reason") == "final":
        return "finished"
    if any(r.get("event") == "stop" for r in records):
        return "failed"
    if now - updated < RUNNING_WINDOW_S:
        return "running"
    return "interrupted" if state is not None else "failed"


def describe(run: Path, now: Optional[float] = None) -> RunRow:
    cfg = yaml.safe_load((run / "config.yaml").read_text()) or {}
    train, model = cfg.get("train") or {}, cfg.get("model") or {}
    records = read_records(run / "metrics.jsonl")
    state = _latest_state(run)
    steps = max([int(r["step"]) for r in records if "step" in r] + [int(state.get("step", 0)) if state else 0])
    planned = f"{train['steps']:,}" if train.get("steps") else f"{train.get('epochs')} epochs"
    if train.get("time_limit"):  # a wall-clock budget: the step count is only a ceiling then
        limit = f"{train['time_limit']:g} s"
        planned = limit if (train.get("steps") or 0) >= 10**7 else f"{planned} or {limit}"
    stamps = [p.stat().st_mtime for p in (run / "metrics.jsonl", run / "checkpoints" / "latest") if p.exists()]
    updated = max(stamps, default=(run / "config.yaml").stat().st_mtime)
    evaluated = None
    if (run / "eval.json").is_file():
        try:
            evaluated = json.loads((run / "eval.json").read_text())
        except ValueError:
            evaluated = None
    preset = cfg.get("name", "?") + (f" <- {Path(cfg['init_from']).name}" if cfg.get("init_from") else "")
    return RunRow(run, preset, model.get("family", "?"), steps, planned,
                  run_status(records, state, updated, time.time() if now is None else now),
                  best_metrics(records, evaluated), updated)


ORDERS = ("updated", "steps", "name")


def check_sort_key(key: str, rows: list[RunRow]) -> None:
    """``--sort`` must name an order or a metric (known, or logged by one of these runs); else one line."""
    logged = {k.split("[", 1)[0] for r in rows for k in r.metrics} | {k for r in rows for k in r.metrics}
    if key in ORDERS or base_name(key) in OUTPUTS or key in logged:
        return
    raise UserError(f"--sort {key!r}: sort by {', '.join(ORDERS)} or a metric ({', '.join(PREFERRED)}, ...)")


def sort_rows(rows: list[RunRow], key: str) -> list[RunRow]:
    """By a metric (best first; runs without it last), or by ``steps`` / ``updated`` (largest first) / ``name``."""
    if key == "name":
        return sorted(rows, key=lambda r: str(r.path))
    if key in ("steps", "updated"):
        return sorted(rows, key=lambda r: getattr(r, key), reverse=True)

    def value(r: RunRow) -> Optional[float]:
        hits = [v for k, v in r.metrics.items() if k == key or k.split("[", 1)[0] == key]
        return hits[0] if hits else None

    have = [r for r in rows if value(r) is not None]
    have.sort(key=lambda r: value(r), reverse=higher_is_better(key))
    return have + [r for r in rows if value(r) is None]


PREFERRED = ("fid", "kid", "precision", "recall", "classes_covered", "is", "accuracy")  # the table's first columns


def _rank(metric: str) -> int:
    base = metric.split("[", 1)[0]
    return PREFERRED.index(base) if base in PREFERRED else len(PREFERRED)


def render(rows: list[RunRow], root: Path, columns: int = 4) -> str:
    """A plain-text table: run, preset, family, steps done / planned, status, then up to ``columns`` metrics."""
    present = {k for r in rows for k in r.metrics}
    names = sorted(present, key=lambda k: (_rank(k), k))[:columns]
    header = ["run", "preset", "family", "steps", "status", *names]
    table = [header]
    for r in rows:
        rel = str(r.path.relative_to(root)) if r.path != root and root in r.path.parents else str(r.path)
        table.append([rel, r.preset, r.family, f"{r.steps:,} / {r.planned}", r.status,
                      *[f"{r.metrics[k]:.4g}" if k in r.metrics else "-" for k in names]])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)
