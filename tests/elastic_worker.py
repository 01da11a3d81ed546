"""A torchrun worker for test_multinode.py: ganforge's CLI, except that one rank can kill itself once, mid-run.

KILL_RANK, KILL_AT_STEP and KILL_MARKER (a file written just before the kill, so a restarted job runs clean)
arm it; without them this is ``python -m ganforge``.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import ganforge.train.loop as loop
from ganforge.cli import main


def _arm() -> None:
    rank, marker = os.environ.get("KILL_RANK"), os.environ.get("KILL_MARKER", "")
    if rank is None or os.environ.get("RANK") != rank or Path(marker).exists():
        return
    at, real, calls = int(os.environ["KILL_AT_STEP"]), loop.run_step, [0]

    def dying(*args, **kw):
        calls[0] += 1
        if calls[0] == at:  # SIGKILL: no handler, no cleanup, as a machine that disappears
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kw)

    loop.run_step = dying


if __name__ == "__main__":
    _arm()
    sys.argv = ["ganforge", *sys.argv[1:]]
    main()
