"""The few plain parts a run's state is made of, each set up once, by ``Run.__init__`` (``loop.py``).

- ``Models``: the networks, their optimizers, EMA copies and updater, the family's trainer and its fixed inputs;
- ``Position``: where the run is (step, epoch, batch in the epoch, best metric): what a checkpoint restores;
- ``LogWindow``: the stat sums since the last metrics line, kept on the device and read once per line;
- ``RunFiles``: what rank 0 writes while the loop runs: ``metrics.jsonl``, TensorBoard, the progress bar.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ganforge.families.contract import Fixed, OptimizerSpec, RunContext, Trainer
from ganforge.train import tensorboard
from ganforge.train.ema import EMA
from ganforge.train.engine import Updater


@dataclass
class Models:
    """The networks by name and everything that updates or samples them."""

    nets: dict[str, nn.Module]
    params: dict[str, int]  # parameter count of every network, counted before placement
    ctx: RunContext  # what the trainer knows of the run: device, memory format, precision, rank, budget, data
    trainer: Trainer
    optimizers: dict[str, torch.optim.Optimizer]
    ema: dict[str, EMA]  # an EMA copy per network the trainer names, when train.ema is on
    updater: Updater
    fixed: Fixed  # the inputs drawn into samples/ every epoch
    specs: dict[str, OptimizerSpec] = field(default_factory=dict)  # what each optimizer was built from (schedules)

    def train_mode(self) -> None:
        for net in self.nets.values():
            net.train()

    def all_models(self) -> dict[str, nn.Module]:
        """The trained networks and their EMA copies ("G_ema"), as a run's summary hands them back."""
        return {**self.nets, **{f"{n}_ema": e.model for n, e in self.ema.items()}}


@dataclass
class Position:
    """Where the run is; every checkpoint stores it and resume restores it."""

    step: int = 0
    epoch: int = 0
    pos: int = 0  # batches done in the current epoch
    end: int = 0  # the step this run stops at: the budget, or earlier once train.time_limit is reached
    best_value: Optional[float] = None  # of eval.best, for checkpoints/best


@dataclass
class LogWindow:
    """Stat sums since the last metrics line, on the device (the host reads them once per line)."""

    keys: tuple[str, ...]
    sums: torch.Tensor
    counts: np.ndarray  # how many steps produced each stat in the window
    skips_in_a_row: torch.Tensor  # refused updates in a row, and the worst such run since the last line
    worst_skips: torch.Tensor
    last: dict[str, float] = field(default_factory=dict)  # the previous line's means
    started: float = 0.0  # perf_counter at the window's start, and the images trained since
    images: int = 0

    @classmethod
    def zeros(cls, keys: tuple[str, ...], device: torch.device) -> "LogWindow":
        zero = torch.zeros((), device=device)
        return cls(keys, torch.zeros(len(keys), device=device), np.zeros(len(keys)), zero.clone(), zero.clone())

    def add(self, values: torch.Tensor, produced, refused: torch.Tensor) -> None:
        """One step's stats; ``refused``: a device bool, true when the update was skipped for a NaN/Inf."""
        self.skips_in_a_row = torch.where(refused, self.skips_in_a_row + 1, torch.zeros_like(self.skips_in_a_row))
        self.worst_skips = torch.maximum(self.worst_skips, self.skips_in_a_row)
        self.sums += values
        self.counts += produced

    def start_clock(self) -> None:
        """The images-per-second clock (a resumed window keeps its sums: the next line is a straight run's)."""
        self.started, self.images = time.perf_counter(), 0

    def restart(self) -> None:
        """A new window, after a metrics line."""
        self.sums.zero_()
        self.counts[:] = 0
        self.start_clock()

    def means(self, sums: list[float]) -> dict[str, float]:
        """The window's mean of every stat produced in it (``sums`` reduced over the ranks)."""
        self.last = {k: round(float(v / n), 5) for k, v, n in zip(self.keys, sums, self.counts) if n > 0}
        return self.last

    def state(self) -> dict[str, list]:
        return {"sum": self.sums.tolist(), "n": self.counts.tolist()}

    def load_state(self, window: Optional[dict[str, Any]]) -> None:
        """So that a resumed run logs exactly what a straight one would (a window of other stats is ignored)."""
        if not window or len(window["sum"]) != len(self.keys):
            return
        self.sums = torch.tensor(window["sum"], dtype=torch.float32, device=self.sums.device)
        n = window["n"]
        self.counts = np.array(n if isinstance(n, list) else [n] * len(self.keys), dtype=np.float64)


class RunFiles:
    """``metrics.jsonl``, the TensorBoard log and the progress bar: opened by ``open`` for the loop, closed after.

    Only rank 0 writes; the other ranks write to the null device, so every rank runs the same code.
    """

    def __init__(self, run_dir: Optional[Path], *, is_main: bool, tensorboard_on: bool):
        self.run_dir = run_dir
        self.ckpt_root = run_dir / "checkpoints" if run_dir is not None else None
        self.is_main, self.tensorboard_on = is_main, tensorboard_on
        self.metrics: Any = None  # the open metrics.jsonl while the loop runs
        self.tb: Optional[tensorboard.TensorBoardLog] = None
        self.bar: Any = None

    def open(self, *, progress: bool, step: int, total: int) -> None:
        from tqdm.auto import tqdm

        assert self.run_dir is not None
        self.metrics = open(self.run_dir / "metrics.jsonl" if self.is_main else os.devnull, "a", buffering=1)
        if self.tensorboard_on and self.is_main:
            self.tb = tensorboard.TensorBoardLog(self.run_dir)
        self.bar = tqdm(total=total, initial=step, disable=None if progress else True, unit="step",
                        dynamic_ncols=True, mininterval=1.0, file=sys.stderr)

    def close(self) -> None:
        for handle in (self.bar, self.metrics, self.tb):
            if handle is not None:
                handle.close()
        self.metrics = self.tb = self.bar = None

    def write(self, record: dict) -> None:
        self.metrics.write(json.dumps(record) + "\n")

    def scalars(self, values: dict, step: int, prefix: str = "train") -> None:
        if self.tb is not None:
            self.tb.scalars(values, step, prefix=prefix)

    def grid(self, images: torch.Tensor, nrow: int, step: int) -> None:
        if self.tb is not None:
            self.tb.grid(images, nrow, step)

    def tb_event(self, kind: str, message: str, step: int) -> None:
        if self.tb is not None:
            self.tb.event(kind, message, step)
