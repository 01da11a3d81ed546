"""SIGTERM/SIGINT end a run cleanly: the loop finishes its step, saves a checkpoint, and returns.

A second signal stops at once (KeyboardInterrupt), for a user who really means it.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Optional


class StopRequest:
    def __init__(self) -> None:
        self.signum: Optional[int] = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handler(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals can only be handled in the main thread
            return
        old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)
