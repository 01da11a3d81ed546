"""A training as users get it: the run (``ganforge.train``), then, once it finished, what they look at first.

The loop owns the run and leaves its files (checkpoints, samples, metrics, pictures); what is built from those
files afterwards lives here, above it: the final evaluation (``eval.final``, the same as ``ganforge evaluate
RUN``) and ``report.html`` (the same as ``ganforge report RUN``), then the hint naming what to open.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Optional

from ganforge.config import RunConfig
from ganforge.errors import UserError
from ganforge.families.outputs import output_of
from ganforge.io_utils import atomic_write_text
from ganforge.metrics.pipeline import summary_line
from ganforge.train.loop import RunSummary, train as run_training

FIRST_LOOK = ("report.html", "real_vs_fake.png", "progress.gif", "losses.png")  # the end-of-run hint, in order


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def train(cfg: RunConfig, run_dir: Optional[Path], *, log: Callable[[str], None] = _stderr, **options) -> RunSummary:
    """``ganforge.train.train`` (every keyword of it), then the final evaluation, the report and the hint."""
    summary = run_training(cfg, run_dir, log=log, **options)
    if summary.run_dir is None or summary.stopped or summary.rank != 0 or summary.steps == 0:
        return summary
    final_evaluation(cfg, summary.run_dir, summary.steps, log)
    write_run_report(summary.run_dir, log)
    first = [name for name in FIRST_LOOK if (summary.run_dir / name).exists()]
    if first:
        then = f" (then {', '.join(first[1:])})" if first[1:] else ""
        log(f"open first: {summary.run_dir / first[0]}{then}")
    return summary


def final_evaluation(cfg: RunConfig, run_dir: Path, step: int, log: Callable[[str], None]) -> Optional[dict]:
    """``eval.final``: the finished run scored as ``ganforge evaluate RUN`` scores it, into its ``eval.json``.

    Every image run, whatever its data: with its extractor when that opens offline, else with the offline fallback
    (``train/reference.py``); with the copy check when its training set is small (``eval.copies_max``); class
    metrics only where the extractor classifies the data's own classes. A failure costs a warning, never the
    finished run."""
    from ganforge.apps.evaluate import evaluate
    from ganforge.train.reference import OFFLINE_FALLBACK

    ec = cfg.eval
    ref = (ec.ref or cfg.data.spec).strip()
    if not ec.final or not output_of(cfg.model).images:
        return None
    try:
        result = evaluate(run_dir, ref, ec.final_metrics, n=ec.final_n, extractor=ec.extractor,
                          device=cfg.train.device if cfg.train.device != "auto" else "cpu", data_root=cfg.data.root,
                          log=log, fallback=OFFLINE_FALLBACK, copies_max=ec.copies_max, pictures=run_dir,
                          own_classes_only=True)
    except (UserError, RuntimeError, ValueError, OSError) as exc:
        log(f"warning: no final evaluation ({' '.join(str(exc).split())[:200]}): run 'ganforge evaluate {run_dir}'")
        return None
    result.update(step=step, by="eval.final")
    atomic_write_text(run_dir / "eval.json", json.dumps(result, indent=2) + "\n")
    log(f"final evaluation: {summary_line(result)}; in {run_dir / 'eval.json'}")
    return result


def write_run_report(run_dir: Path, log: Callable[[str], None]) -> None:
    """``report.html`` of the run; a failure costs a warning, never the finished run."""
    from ganforge.apps.report import write_report

    try:
        write_report([run_dir], run_dir / "report.html")
    except Exception as exc:  # noqa: BLE001 - pictures must never cost the user a finished run
        log(f"warning: could not write the report: {exc}")
