"""One training step of any family: its phases, each a guarded optimizer update, with no host sync.

For every phase due at this step: freeze the networks it does not train, compute its loss under autocast,
backward (scaled by a GradScaler for fp16), average gradients over the data-parallel ranks, then step the
optimizer **only if** the loss and every gradient are finite. That check stays on the device: fused Adam takes
it as its ``found_inf`` flag and skips the update inside the kernel, so a NaN never reaches the weights and the
host never waits for the GPU. Optimizers without that flag (RMSprop, unfused ones) read it back, one sync each.

The step returns the stats over ``keys`` as one device vector, and (on the host) which of them this step produced:
the loop sums both over a log window and reads the device sums once per logged line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from ganforge.train.distributed import Dist
from ganforge.families.contract import Batch, Trainer


@dataclass
class Updater:
    """The optimizers of a run and everything an update needs besides the loss."""

    nets: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    networks_of: dict[str, tuple[str, ...]]  # optimizer name -> the networks it updates
    dist: Dist = field(default_factory=Dist)
    scalers: dict[str, torch.amp.GradScaler] = field(default_factory=dict)  # fp16 only, one per optimizer
    accumulate: int = 1  # train.batch_per_device: micro-batches per update (see ``accumulated_loss``)

    def params(self, optimizer: str) -> list[torch.Tensor]:
        return [p for n in self.networks_of[optimizer] for p in self.nets[n].parameters()]

    def update(self, optimizer: str, loss: torch.Tensor, whole: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Backward ``loss`` and step ``optimizer`` unless something is not finite; returns ok as a device bool.

        ``whole``: gradient accumulation; ``.grad`` already holds the earlier micro-batches' shares, ``loss`` is
        the last share and ``whole`` the batch's loss, which the finite check and the ranks' average use."""
        opt, scaler = self.optimizers[optimizer], self.scalers.get(optimizer)
        params = self.params(optimizer)
        if whole is None:
            opt.zero_grad(set_to_none=True)
        (loss if scaler is None else scaler.scale(loss)).backward()
        loss = self.dist.all_reduce_grads(params, loss if whole is None else whole)  # no-op in a single process
        if scaler is not None:  # fp16: the scaler skips overflowed steps itself (routine while its scale settles)
            ok = torch.isfinite(loss.detach())
            if bool(ok):
                scaler.step(opt)
                scaler.update()
            return ok
        ok = all_finite(loss, params)
        if opt.defaults.get("fused"):
            opt.found_inf = (~ok).float()  # the fused kernel skips the whole update where this is 1
            try:
                opt.step()
            finally:
                del opt.found_inf
        elif bool(ok):
            opt.step()
        return ok


def all_finite(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """Loss and every gradient finite, as a 0-d bool tensor on the loss's device (one fused norm, no sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    ok = torch.isfinite(loss.detach().float())
    if grads:
        ok = ok & torch.isfinite(torch.stack(torch._foreach_norm(grads)).float()).all()
    return ok


def _freeze_all_but(nets: dict[str, nn.Module], trains: tuple[str, ...], frozen: list[nn.Parameter]) -> None:
    """Gradients only for the networks a phase trains, never for the trainer's frozen parameters (freeze_d)."""
    for name, net in nets.items():
        net.requires_grad_(name in trains)
    for p in frozen:
        p.requires_grad_(False)


def accumulated_update(trainer: Trainer, updater: Updater, phase, batch: Batch,
                       step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One update of ``phase`` from ``updater.accumulate`` micro-batches (train.batch_per_device): the memory
    of the micro-batch, the update of the whole batch.

    Exact against the whole batch because each micro-batch is what one more rank would hold: the trainer sees
    ``world_size x accumulate`` ranks and micro-batch ``j`` of rank ``r`` as rank ``r x accumulate + j``, so its
    latents are its slice of the global draw; the RNG is rewound before each micro-batch, so every one draws
    the same global z and the stream ends where one draw leaves it. Each share's loss is divided by
    ``accumulate``, so the summed gradients are the mean's. Only statistics over the batch (BatchNorm in
    training mode, minibatch-stddev) see the micro-batch instead: they differ, as they do between ranks.
    """
    k, ctx = updater.accumulate, trainer.ctx
    rank, world = ctx.rank, ctx.world_size
    rng = _rng_state(ctx.device)
    parts = [tuple(t[j * (len(t) // k):(j + 1) * (len(t) // k)] for t in batch) for j in range(k)]
    whole, sums = None, {}
    opt = updater.optimizers[phase.optimizer]
    opt.zero_grad(set_to_none=True)
    try:
        ctx.world_size = world * k
        for j, part in enumerate(parts):
            ctx.rank = rank * k + j
            _set_rng_state(ctx.device, rng)
            loss, named = phase.loss(part, step)
            whole = loss.detach() / k if whole is None else whole + loss.detach() / k
            sums = {n: v.detach() / k + sums.get(n, 0) for n, v in named.items()}
            if j < k - 1:
                scaler = updater.scalers.get(phase.optimizer)
                (loss / k if scaler is None else scaler.scale(loss / k)).backward()
        ctx.rank, ctx.world_size = rank, world
        return ~updater.update(phase.optimizer, loss / k, whole), sums
    finally:
        ctx.rank, ctx.world_size = rank, world


def _rng_state(device: torch.device) -> tuple:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(device: torch.device, state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def run_step(trainer: Trainer, updater: Updater, keys: tuple[str, ...], batches: list[Batch],
             step: int) -> tuple[torch.Tensor, tuple[bool, ...]]:
    """Every phase due at ``step``; returns (values, produced) over ``keys``, "skipped" counting refused updates."""
    stats: dict[str, torch.Tensor] = {}
    skipped: Optional[torch.Tensor] = None
    frozen = getattr(trainer, "frozen", [])
    trainer.begin_step(step)
    for phase in trainer.phases():
        if step % phase.every:
            continue
        _freeze_all_but(trainer.nets, phase.trains, frozen)
        for i in range(phase.repeat):
            batch = batches[i] if phase.repeat > 1 else batches[-1]
            if updater.accumulate > 1:
                refused, named = accumulated_update(trainer, updater, phase, batch, step)
            else:
                loss, named = phase.loss(batch, step)
                refused = ~updater.update(phase.optimizer, loss)
            skipped = refused.float() if skipped is None else skipped + refused.float()
            if phase.after_update is not None:
                phase.after_update()
            stats.update(named)  # with repeats, the last update's values
    _freeze_all_but(trainer.nets, tuple(trainer.nets), frozen)
    device = trainer.ctx.device
    stats["skipped"] = skipped if skipped is not None else torch.zeros((), device=device)
    zero = torch.zeros((), device=device)
    values = torch.stack([stats[k].detach().float().reshape(()) if k in stats else zero for k in keys])
    return values, tuple(k in stats for k in keys)
