"""The run directory of a new run: refused up front when it cannot be one, and removed again when the run stops
before its first checkpoint (nothing to resume there, and --out would refuse it)."""
from __future__ import annotations

import shutil
from pathlib import Path

from ganforge.checkpoint import list_checkpoints
from ganforge.errors import UserError
from ganforge.io_utils import check_output_dir


def check_new_run_dir(run_dir: Path) -> None:
    """A new run needs a new (or empty) folder that can be made: refused in one line before any work."""
    check_output_dir(run_dir)
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if (run_dir / "config.yaml").is_file():
            raise UserError(f"--out {run_dir} is an existing run: continue it with --resume {run_dir}, "
                            "or choose another --out")
        raise UserError(f"--out {run_dir} is a folder that already holds files and no ganforge run (nothing to "
                        "--resume there): choose a new or empty folder")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the one line that says what became of the run directory."""


def discard_unstarted(run_dir: Path, existed: bool) -> bool:
    """Remove what a new run wrote when it stopped before its first checkpoint (a dead end otherwise: nothing
    to ``--resume``, and ``--out`` refuses the folder); True when it did."""
    trained = [p for p in list_checkpoints(run_dir / "checkpoints") if not p.name.endswith("-s00000000")]
    if not run_dir.is_dir() or trained:  # a step-0 checkpoint holds no training: resuming it is starting again
        return False
    if not existed:
        shutil.rmtree(run_dir, ignore_errors=True)
        return True
    for child in run_dir.iterdir():
        shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
    return True
