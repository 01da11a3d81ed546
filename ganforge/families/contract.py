"""What a family declares about its training; the loop (``loop.py``) runs any family without knowing which.

A family's trainer names its networks (built by the model registry), its optimizers (which networks each one
updates, and its learning rate), its **phases** -- as NVlabs stylegan2-ada's ``Gmain / Greg / Dmain / Dreg``: which
loss, which networks take gradients, which optimizer steps, every how many steps -- and the statistics it logs.
It also says what sampling means for it (the fixed inputs drawn into ``samples/`` every epoch), which networks
keep an EMA copy, and any extra state it needs checkpointed.

``engine.run_step`` does the rest the same way for every family: autocast, backward, gradient averaging over the
data-parallel ranks, the NaN/Inf check on the device and the optimizer step.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, Union, runtime_checkable

import torch
from torch import nn

from ganforge.errors import UserError
from ganforge.viz import LossPanels

Batch = tuple[torch.Tensor, torch.Tensor]  # (images or points, labels) of this rank, already on the device
StatDict = dict[str, torch.Tensor]


@dataclass
class Phase:
    """One kind of update. ``loss(batch, step)`` returns the loss to minimise and named scalar stats."""

    name: str  # e.g. "Dmain", "Dreg", "Gmain"
    optimizer: str  # the optimizer that steps after it
    trains: tuple[str, ...]  # networks that take gradients (the others are frozen for it)
    loss: Callable[[Batch, int], tuple[torch.Tensor, StatDict]]
    every: int = 1  # run at steps where step % every == 0 (lazy regularisation)
    repeat: int = 1  # updates per step, each on its own real batch (k discriminator steps)
    after_update: Optional[Callable[[], None]] = None  # e.g. WGAN's weight clipping


Schedule = Callable[[int, int], float]  # (step, total_steps) -> a hyper-parameter's value before that update


def _ramp_fraction(step: int, span: int) -> float:
    """How far along its ramp a schedule is: 0 at the start, 1 from ``span`` updates on (and for an empty span)."""
    return min(1.0, step / span) if span > 0 else 1.0


@dataclass(frozen=True)
class Cosine:
    """``start`` -> ``end`` along half a cosine over the first ``steps`` updates (None: the run's whole budget),
    then held at ``end``: e.g. R3GAN's learning rate 2e-4 -> 5e-5 and Adam's beta2 0.9 -> 0.99."""

    start: float
    end: float
    steps: Optional[int] = None

    def __call__(self, step: int, total_steps: int) -> float:
        t = _ramp_fraction(step, self.steps or total_steps)
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass(frozen=True)
class Linear:
    """``start`` -> ``end`` in a straight line over the first ``steps`` updates (None: the whole budget), then held."""

    start: float
    end: float
    steps: Optional[int] = None

    def __call__(self, step: int, total_steps: int) -> float:
        t = _ramp_fraction(step, self.steps or total_steps)
        return self.start + (self.end - self.start) * t


OPTIMIZER_KINDS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULED = ("lr", "beta1", "beta2", "eps", "weight_decay", "momentum")  # what ``OptimizerSpec.schedules`` may set


@dataclass
class OptimizerSpec:
    """One optimizer of a family: the networks it updates and how.

    ``kind`` and ``betas`` left at None come from the run's ``train.optimizer`` and ``train.beta1/beta2`` (the
    keys every family that keeps the default reads); a family that fixes them declares its own recipe and should
    not declare those train keys (``Family.train_keys``). ``schedules`` give a hyper-parameter's value before every
    update as a pure function of (step, total_steps) -- a ``Cosine``/``Linear`` or any callable -- so resume stays
    exact with nothing to checkpoint. The ``"lr"`` schedule gives the learning rate itself; ``train.lr_decay`` and a
    rollback's lower rate scale it as they scale a constant one.
    """

    networks: tuple[str, ...]  # whose parameters it updates
    lr: float
    kind: Optional[str] = None  # adam | adamw | rmsprop | sgd; None: train.optimizer
    betas: Optional[tuple[float, float]] = None  # Adam's; None: (train.beta1, train.beta2)
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0  # rmsprop and sgd
    schedules: dict[str, Schedule] = field(default_factory=dict)  # SCHEDULED key -> its value per step

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in OPTIMIZER_KINDS:
            raise ValueError(f"OptimizerSpec.kind={self.kind!r}: choose one of {', '.join(OPTIMIZER_KINDS)}")
        unknown = [k for k in self.schedules if k not in SCHEDULED]
        if unknown:
            raise ValueError(f"OptimizerSpec.schedules[{unknown[0]!r}]: schedulable are {', '.join(SCHEDULED)}")


@dataclass
class RunContext:
    """What the loop tells a trainer about the run it is part of."""

    device: torch.device
    memory_format: torch.memory_format = torch.contiguous_format
    amp_dtype: Optional[torch.dtype] = None  # autocast dtype of the forwards (bf16/fp16); None: float32
    rank: int = 0
    world_size: int = 1
    total_steps: int = 1
    dataset: Any = None

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


@dataclass
class Fixed:
    """The inputs drawn into ``samples/`` every epoch, and how many go in a grid row."""

    tensors: dict[str, torch.Tensor]  # saved in checkpoints as ``fixed.<name>``
    nrow: int
    labels_key: Optional[str] = None  # the tensor holding each fixed input's class, for a conditional family

    @property
    def labels(self) -> Optional[torch.Tensor]:
        """The class each fixed input is drawn for (None when the family draws without labels)."""
        return self.tensors.get(self.labels_key) if self.labels_key else None


@runtime_checkable
class StyleBasedGenerator(Protocol):
    """What a family with ``style_based=True`` gives: z -> w by a mapping, w -> image by a synthesis network.

    Truncation, style mixing, w-space walks and projection use exactly this (``apps/sampling.py``, ``apps/latents.py``,
    ``apps/project.py``)."""

    num_ws: int  # how many ws the synthesis network takes (one per style input)
    w_avg: torch.Tensor  # the tracked mean of w, the centre of truncation
    default_crossover: int  # where coarse styles end and fine ones begin, for the mixing grid

    def mapping(self, z: torch.Tensor, y: Optional[torch.Tensor] = None,
                truncation_psi: float = 1.0) -> torch.Tensor: ...

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor: ...

    def broadcast(self, w: torch.Tensor) -> torch.Tensor: ...  # one w (N, w_dim) -> every style input (N, num_ws, w_dim)


class Trainer:
    """Base class of a family's training; subclasses fill in the declarations below."""

    stat_keys: tuple[str, ...] = ()  # what ``metrics.jsonl`` gets each log window (the loop adds "skipped")
    ema_networks: tuple[str, ...] = ("G",)  # networks with an EMA copy when train.ema.enabled
    # the stat that measures D's view of the fakes as a probability (the collapse watch's domination check; None
    # when D's outputs are no probability), and the generator's loss (its divergence check)
    fake_score_stat: Optional[str] = "d_fake"
    g_loss_stat: Optional[str] = "loss_g"
    # what losses.png draws (the rest of stat_keys goes to stats.png): the vocabulary every shipped family shares
    loss_panels = LossPanels(losses=(("loss_d", "D loss"), ("loss_g", "G loss")),
                             scores=(("d_real", "D(x)  (real)"), ("d_fake", "D(G(z))  (fake)")),
                             accounted=("loss_d_real", "loss_d_fake"))

    def __init__(self, cfg, nets: dict[str, nn.Module], ctx: RunContext):
        from ganforge.families import get_family

        self.cfg, self.nets, self.ctx = cfg, nets, ctx
        self.conditional = get_family(cfg.model.family).conditional  # G takes class labels
        # train.freeze_d (FreezeD): frozen here, before the loop builds the optimizers; the engine keeps them frozen
        self.frozen: list[nn.Parameter] = self._freeze_d(int(getattr(cfg.train, "freeze_d", 0) or 0))

    # --- declarations
    def optimizers(self) -> dict[str, OptimizerSpec]:
        """By default a G/D family's two: "G" at train.lr_g, "D" at train.lr_d (TTUR when they differ)."""
        tc = self.cfg.train
        return {"G": OptimizerSpec(("G",), tc.lr_g), "D": OptimizerSpec(("D",), tc.lr_d)}

    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def d_blocks(self) -> list[nn.Module]:
        """D's blocks ordered from the image side, what train.freeze_d counts: by default those the network "D"
        declares with a ``d_blocks()`` method of its own; a family whose D declares none cannot freeze D."""
        blocks = getattr(self.nets.get("D"), "d_blocks", None)
        if blocks is None:
            raise UserError(f"train.freeze_d: family {self.cfg.model.family!r} cannot freeze D (its discriminator "
                            "declares no blocks): drop train.freeze_d")
        return list(blocks())

    def _freeze_d(self, k: int) -> list[nn.Parameter]:
        """The parameters of D's first ``k`` blocks, set to take no gradient (so no update, no Adam moments)."""
        if not k:
            return []
        blocks = self.d_blocks()
        if k > len(blocks):
            raise UserError(f"train.freeze_d={k}, but {self.cfg.model.family}'s D has {len(blocks)} blocks: use "
                            f"--set train.freeze_d={len(blocks)} or less")
        params = [p for block in blocks[:k] for p in block.parameters()]
        for p in params:
            p.requires_grad_(False)
        return params

    # --- sampling: noise -> image by default; other families override both
    def fixed_inputs(self, seed: int, n: int) -> Fixed:
        from ganforge.families import sample_z

        gen = torch.Generator().manual_seed(seed + 12345)
        z = sample_z(n, self.cfg.model, generator=gen)
        return Fixed({"z": z}, max(1, math.ceil(math.sqrt(n))))

    def generator_inputs(self, n: int, gen: torch.Generator) -> tuple:
        """``n`` random inputs of the generator, drawn from ``gen`` (BatchNorm refresh of the EMA, evaluation)."""
        from ganforge.families import sample_z

        z = sample_z(n, self.cfg.model, "cpu", generator=gen).to(self.ctx.device)
        if not self.conditional:
            return (z,)
        y = torch.randint(0, self.cfg.model.num_classes, (n,), generator=gen).to(self.ctx.device)
        return z, y

    def latents(self, n: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """z (and fake labels) for this rank's ``n`` samples of a training step: every rank draws the global
        batch from the shared RNG stream and keeps its slice, so the streams stay identical across ranks and
        equal to one process's with the same global batch."""
        from ganforge.families import sample_z

        world, dev = self.ctx.world_size, self.ctx.device
        z = sample_z(n * world, self.cfg.model, dev)
        y = torch.randint(0, self.cfg.model.num_classes, (n * world,), device=dev) if self.conditional else None
        if world > 1:
            mine = slice(self.ctx.rank * n, (self.ctx.rank + 1) * n)
            z, y = z[mine], (y[mine] if y is not None else None)
        return z, y

    def draw(self, generator: nn.Module, fixed: Fixed) -> torch.Tensor:
        """What the fixed inputs give with ``generator`` (G or its EMA copy), as float32 on the CPU."""
        y = fixed.labels
        return generator(fixed.tensors["z"].to(self.ctx.device),
                         None if y is None else y.to(self.ctx.device)).float().cpu()

    # --- pictures
    def picture(self, fake: torch.Tensor, fixed: Fixed) -> tuple[torch.Tensor, int]:
        """The grid drawn into ``samples/`` from what ``draw`` gave, and its images per row."""
        return fake, fixed.nrow

    def real_images(self, items: torch.Tensor) -> torch.Tensor:
        """Dataset items -> the real images they hold (``real_vs_fake.png``)."""
        return items

    def finish_pictures(self, run_dir, frames: list) -> None:
        """Pictures of the family's own, drawn once at the end from the ``samples/`` frames."""

    # --- per step and extra state
    def capture_refusal(self) -> Optional[str]:
        """Why this family's step cannot be replayed as a CUDA graph (``train.cuda_graph``), or None when it can.

        A graph replays the kernels it recorded: the step must do the same device work at every step but for which
        phases are due, draw its randomness on the device, and read nothing back to the host. A family says None
        only once it has checked that for its options; the default refuses, so a new family stays eager."""
        return f"the {self.cfg.model.family} trainer does not declare its step graph-safe (Trainer.capture_refusal)"

    def begin_step(self, step: int) -> None:
        """Called before the phases of every step (e.g. clear what a step shares between its phases)."""

    def ema_decay(self, step: int) -> Optional[float]:
        """The EMA copies' decay for the update after ``step`` (e.g. from a scheduled half-life), or None for
        train.ema.decay. A pure function of the step, so resume stays exact."""
        return None

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors and JSON values to checkpoint beyond networks, optimizers and RNG states (e.g. an image pool)."""
        return {}, {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        pass


def trainer_class(path: Union[str, type]) -> type[Trainer]:
    """A family's trainer: the class itself, or ``"module:Class"`` imported now (the shipped families name theirs
    lazily, so that reading a config does not import every trainer)."""
    import importlib

    if isinstance(path, type):
        return path
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
