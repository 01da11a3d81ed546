"""``train.tensorboard`` (``ganforge train --tensorboard``): the run's scalars, sample grids and guard events as
TensorBoard event files in the run directory itself, so ``tensorboard --logdir runs`` shows every run side by side.

TensorBoard is an optional extra (``pip install 'ganforge[tensorboard]'``): without it the run refuses to start,
before anything is written, with that command in the message. Scalars keep their ``metrics.jsonl`` names under
``train/`` (losses, D(x), learning rates, images/s) and ``eval/`` (periodic metrics); the fixed-latent grids go
under ``samples``, guard events under ``events``.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ganforge.errors import UserError

SKIP = ("step", "epoch", "time")


def require() -> None:
    """Raise the one-line fix when TensorBoard is not installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError("train.tensorboard needs the tensorboard package: pip install 'ganforge[tensorboard]' "
                        "(or drop --tensorboard)") from None


class TensorBoardLog:
    def __init__(self, run_dir: Path):
        require()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir))

    def scalars(self, record: dict, step: int, prefix: str = "train") -> None:
        for key, value in record.items():
            if key not in SKIP and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def grid(self, images: torch.Tensor, nrow: int, step: int) -> None:
        """A batch in [-1, 1] (N, C, H, W), tiled as ``samples/`` draws it."""
        from torchvision.utils import make_grid

        x = images.detach().float().cpu().clamp(-1, 1).add(1).div(2)
        self.writer.add_image("samples", make_grid(x, nrow=nrow, padding=2), step)

    def event(self, kind: str, message: str, step: int) -> None:
        self.writer.add_text("events", f"**{kind}**: {message}", step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
