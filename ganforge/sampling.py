"""Loading a trained generator and drawing images from it: ``load_generator(run_dir).sample(16, seed=0)``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from ganforge.checkpoint import Checkpoint, load_checkpoint, load_latest
from ganforge.config import RunConfig, load_run_config, validate
from ganforge.errors import UserError
from ganforge.models import build_networks, get_family, sample_z


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available: use --set train.device=cpu")
    return dev


class TrainedGenerator:
    """A generator ready for sampling (EMA weights when the run kept them), in eval mode."""

    def __init__(self, module: nn.Module, config: RunConfig, device: torch.device, checkpoint: Optional[Path] = None):
        self.module = module.eval().to(device)
        self.config = config
        self.device = device
        self.checkpoint = checkpoint
        self.conditional = get_family(config.model.family).conditional

    @property
    def num_classes(self) -> Optional[int]:
        return self.config.model.num_classes if self.conditional else None

    def _labels(self, n: int, labels: Optional[Sequence[int]], gen: torch.Generator) -> Optional[torch.Tensor]:
        if not self.conditional:
            if labels is not None:
                raise UserError("--labels is for conditional models; this run's family is "
                                f"{self.config.model.family!r}")
            return None
        k = self.config.model.num_classes
        if labels is None:
            return torch.arange(n) % k  # every class in turn
        lab = torch.as_tensor(list(labels), dtype=torch.long)
        if lab.numel() == 0 or lab.min() < 0 or lab.max() >= k:
            raise UserError(f"labels {list(labels)} out of range: use integers from 0 to {k - 1}")
        return lab.repeat((n + lab.numel() - 1) // lab.numel())[:n]

    @torch.inference_mode()
    def sample(self, n: int, seed: int = 0, labels: Optional[Sequence[int]] = None, batch_size: int = 256,
               z: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``n`` images, float in [-1, 1], (n, C, H, W) on the CPU; the same seed gives the same images."""
        if n < 1:
            raise UserError(f"n={n}: ask for at least one sample")
        gen = torch.Generator().manual_seed(seed)
        if z is None:
            z = sample_z(n, self.config.model, "cpu", generator=gen)
        y = self._labels(n, labels, gen)
        out = []
        for i in range(0, n, batch_size):
            zb = z[i:i + batch_size].to(self.device)
            yb = y[i:i + batch_size].to(self.device) if y is not None else None
            out.append(self.module(zb, yb).float().cpu())
        points = getattr(self.config.model, "point_dim", None) is not None
        return torch.cat(out) if points else torch.cat(out).clamp_(-1, 1)


def generator_from_checkpoint(ckpt: Checkpoint, device: torch.device) -> TrainedGenerator:
    cfg = validate(ckpt.state["config"], source=f"{ckpt.path}/state.json", written_by_ganforge=True)
    if get_family(cfg.model.family).translation:
        raise UserError(f"{ckpt.path.parent.parent} is a {cfg.model.family!r} run, which translates images rather "
                        "than drawing from noise: use 'ganforge translate RUN_DIR --input ... --out ...'")
    name = get_family(cfg.model.family).generator
    G = build_networks(cfg.model)[name]
    state = ckpt.module_state(f"{name}_ema") or ckpt.module_state(name)
    G.load_state_dict(state)
    return TrainedGenerator(G, cfg, device, ckpt.path)


def load_generator(run_dir: str | Path, device: str = "cpu", checkpoint: Optional[str | Path] = None) -> TrainedGenerator:
    """The generator of a run directory (its newest good checkpoint, or ``checkpoint`` when given)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist")
    dev = pick_device(device)
    if checkpoint is not None:
        ckpt = load_checkpoint(Path(checkpoint))
    else:
        load_run_config(run_dir)  # a clear error when this is not a run directory
        ckpt = load_latest(run_dir / "checkpoints")
    return generator_from_checkpoint(ckpt, dev)
