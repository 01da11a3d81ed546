"""Data-parallel training: one process per device, each holding a replica of G and D, gradients averaged.

Launch with Hugging Face Accelerate or torchrun (see docs/DISTRIBUTED.md)::

    accelerate launch --multi_gpu --num_processes 4 -m ganforge train dcgan-celeba
    torchrun --nproc_per_node 4 -m ganforge train dcgan-celeba

Both start one process per device and set the standard environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT); ``init_from_env`` reads it and joins the process group (NCCL on CUDA, gloo on
CPU). Without it (WORLD_SIZE unset or 1) every method here is a no-op and training is the plain single process.

Why the models are not wrapped in ``DistributedDataParallel``: a GAN step runs D in both phases and toggles
``D.requires_grad_`` between them, so D's parameters take part in some backward passes and not in others, and the
G step backpropagates through D's forward without wanting D's gradients; DDP's reducer (hooks fired by
backward, buckets expected to fill once per forward) breaks or silently mis-syncs on that. Averaging the
gradients explicitly, once per optimizer step, right before ``step()`` is exactly what DDP computes, without its
assumptions (NVlabs' stylegan2-ada trains the same way).

What makes N processes equal one process with the same global batch (``train.batch_size`` is global):

- data: every rank computes the same permutation and takes its contiguous slice of each global batch
  (``BatchSource``);
- noise: every rank draws the whole global batch of z (and fake labels) from the same RNG state and keeps its
  slice (``steps._latents``), so the RNG streams stay identical across ranks and equal to a single process's;
- gradients: each loss is a mean over the local slice; the average over ranks of those gradients is the gradient
  of the mean over the global batch, and every replica applies the same Adam update to the same weights.

What remains is float rounding (sums in a different order), except with BatchNorm: each rank normalises with
its own slice's statistics unless ``train.sync_batchnorm`` (CUDA only) makes them global.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Iterable, Optional

import torch
import torch.distributed as td
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from ganforge.errors import UserError
from ganforge.devices import pick_device

# launchers name the process's place in these variables: torchrun / accelerate, then Open MPI, then MPICH/Intel MPI
_RANK = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")
_WORLD = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
_LOCAL_RANK = ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID")


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return int(value)
            except ValueError:
                raise UserError(f"environment variable {name}={value!r} is not an integer") from None
    return default


@dataclass
class Dist:
    """This process's place in a data-parallel run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # init_from_env created the process group, so shutdown() destroys it

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files or logs."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    # ---------------------------------------------------------------------------------------- collectives

    def barrier(self) -> None:
        if not self.enabled:
            return
        if self.device.type == "cuda" and td.get_backend() == "nccl":
            td.barrier(device_ids=[self.device.index])
        else:
            td.barrier()

    def broadcast_module(self, module: nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers."""
        if not self.enabled:
            return
        tensors = [t.data for t in module.parameters()] + [b for b in module.buffers()]
        for group in _by_dtype(tensors):
            flat = _flatten_dense_tensors(group).to(self.device)
            td.broadcast(flat, src=0)
            for t, new in zip(group, _unflatten_dense_tensors(flat, group)):
                t.copy_(new)

    def all_reduce_grads(self, params: Iterable[torch.Tensor],
                         loss: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        """Average the gradients of ``params`` over the ranks, in place; returns ``loss`` averaged likewise.

        One flat buffer per dtype, one all-reduce each. Parameters whose ``grad`` is None are skipped: every rank
        runs the same step on the same model, so they are the same parameters on every rank. Passing the loss
        lets a non-finite loss on any rank show on all of them (a finite check of the result agrees everywhere).
        """
        if not self.enabled:
            return loss
        tensors = [p.grad for p in params if p.grad is not None]
        if loss is not None:
            loss = loss.detach().reshape(1).clone()
            tensors.append(loss)
        for group in _by_dtype(tensors):
            flat = _flatten_dense_tensors(group)
            td.all_reduce(flat, op=td.ReduceOp.SUM)
            flat.div_(self.world_size)
            for t, new in zip(group, _unflatten_dense_tensors(flat, group)):
                t.copy_(new)
        return None if loss is None else loss[0]

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of ``tensor`` over the ranks (a new tensor on ``tensor``'s device)."""
        if not self.enabled:
            return tensor.clone()
        t = tensor.detach().to(self.device, copy=True)
        td.all_reduce(t, op=td.ReduceOp.SUM)
        return t.div_(self.world_size).to(tensor.device)

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any: decisions that must not differ between ranks."""
        if not self.enabled:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        td.all_reduce(t, op=td.ReduceOp.MAX)
        return bool(t.item() > 0)

    def broadcast_float(self, value: float) -> float:
        """Rank 0's ``value`` on every rank."""
        if not self.enabled:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        td.broadcast(t, src=0)
        return float(t.item())

    def sync_rng(self) -> None:
        """Give every rank rank 0's RNG state for this device (after a checkpoint restored the RNGs).

        The CPU generator is restored identically everywhere; a CUDA one is per device, and a checkpoint only
        holds the states rank 0's process saw, where only its own device's generator had moved.
        """
        if not self.enabled:
            return
        if self.device.type == "cuda":
            state = torch.cuda.get_rng_state(self.device).to(self.device)
            td.broadcast(state, src=0)
            torch.cuda.set_rng_state(state.cpu(), self.device)
        state = torch.get_rng_state().to(self.device)
        td.broadcast(state, src=0)
        torch.set_rng_state(state.cpu())

    # ---------------------------------------------------------------------------------------- helpers

    def local_batch(self, batch_size: int, multiple: int = 1) -> int:
        """This rank's share of the global ``batch_size``; a UserError unless it divides evenly (each share a
        multiple of ``multiple``, the family's batch multiple)."""
        if batch_size % (self.world_size * multiple):
            times = f" x the model's batch multiple {multiple}" if multiple > 1 else ""
            raise UserError(f"train.batch_size={batch_size} is the global batch, split over {self.world_size} "
                            f"processes: it must be a multiple of {self.world_size}{times} = "
                            f"{self.world_size * multiple}")
        return batch_size // self.world_size

    def shutdown(self) -> None:
        if self.owns_group and td.is_initialized():
            td.destroy_process_group()
        self.owns_group = False


def _by_dtype(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    groups: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault(t.dtype, []).append(t)
    return list(groups.values())


def _round_store(world: int, timeout: Optional[float]) -> "td.Store":
    """torchrun's agent store, under a prefix that every worker of this restart round agrees on.

    torchrun prefixes the store with TORCHELASTIC_RESTART_COUNT, but after a lost worker only the failed node's
    agent counts a restart: the survivor's agent restarts its worker for the new membership with its count
    unchanged, the two rounds then look for each other under different prefixes, and the process group never
    forms. Every worker instead takes a ticket; tickets ``k * world .. (k + 1) * world - 1`` are round ``k``.
    """
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    wait = timedelta(seconds=timeout if timeout is not None else 1800)
    store = td.TCPStore(host, port, is_master=False, timeout=wait)
    ticket = store.add(f"ganforge/{os.environ.get('TORCHELASTIC_RUN_ID', 'run')}/tickets", 1) - 1
    return td.PrefixStore(f"ganforge/round{ticket // world}", store)


def init_from_env(device: str = "auto", backend: Optional[str] = None, timeout: Optional[float] = None) -> Dist:
    """Join the data-parallel run the launcher described in the environment, or a single process.

    ``device`` is ``train.device``; when it resolves to CUDA, each process takes ``cuda:LOCAL_RANK``. A process
    group that already exists (made by the caller, or by ``accelerate.Accelerator``) is used as it is.
    """
    dev = pick_device(device)
    if td.is_available() and td.is_initialized():
        rank, world = td.get_rank(), td.get_world_size()
        local = _env_int(_LOCAL_RANK, rank)
        owns = False
    else:
        world = _env_int(_WORLD, 1)
        rank, local = _env_int(_RANK, 0), _env_int(_LOCAL_RANK, 0)
        owns = world > 1
    if world <= 1:
        return Dist(device=dev)
    if not td.is_available():
        raise UserError(f"WORLD_SIZE={world} but this PyTorch build has no torch.distributed")
    if not 0 <= rank < world:
        raise UserError(f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world})")
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise UserError(f"process LOCAL_RANK={local} has no GPU: this machine has {torch.cuda.device_count()}; "
                            "start at most one process per GPU (--num_processes / --nproc_per_node)")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    elif dev.type != "cpu":
        raise UserError(f"distributed training runs on CUDA or CPU, not {dev.type!r}: set train.device")
    if owns:
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(name):
                raise UserError(f"WORLD_SIZE={world} but {name} is not set: start the processes with "
                                "'accelerate launch' or 'torchrun' (see docs/DISTRIBUTED.md)")
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        bind = {"device_id": dev} if backend == "nccl" else {}  # NCCL: this process's GPU, set up at once
        if timeout is not None:  # train.dist_timeout: a collective waits this long for a peer, not 30 minutes
            bind["timeout"] = timedelta(seconds=timeout)
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true":
            bind["store"] = _round_store(world, timeout)
        td.init_process_group(backend, rank=rank, world_size=world, **bind)
    return Dist(rank=rank, world_size=world, local_rank=local, device=dev, owns_group=owns)


# ---------------------------------------------------------------------------------------- lost workers


class LostWorker(UserError):
    """A peer process stopped (killed, crashed, its machine gone): one line naming it, never a silent hang."""

    exit_code = 1  # a failure, not a mistake: torchrun --max-restarts restarts on it


def elastic_resume(run_dir: Optional[Path]) -> bool:
    """Whether this process is a torchrun restart that should continue ``run_dir`` from its newest checkpoint.

    Under ``torchrun --max-restarts N`` (N > 0) the same command runs again after a worker is lost; a fresh run
    would refuse its own ``--out``. Every rank decides alike from the launch and the (shared) run directory,
    without the process group: an agent whose own worker did not fail restarts with TORCHELASTIC_RESTART_COUNT
    still 0, so the restart count alone would split the ranks.
    """
    if run_dir is None or _env_int(("TORCHELASTIC_MAX_RESTARTS",), 0) <= 0:
        return False
    ckpts = Path(run_dir) / "checkpoints"
    return ckpts.is_dir() and any(ckpts.iterdir())


class Watchdog:
    """Heartbeats through the launcher's TCP store, so that a rank knows which peer is gone and stops in time.

    Every ``interval`` seconds a thread bumps this rank's counter and reads the others'. A peer whose counter has
    not moved for ``timeout`` seconds (train.dist_timeout) is lost: the thread prints one line naming it and ends
    the process, since the main thread may sit in a collective that NCCL would never return from. When a
    collective fails first (gloo sees the closed socket at once), ``lost()`` names the peers that stopped beating.
    The keys carry a token rank 0 draws at start, so a restarted job never reads its dead predecessor's beats.
    """

    def __init__(self, dist: Dist, timeout: float, interval: Optional[float] = None) -> None:
        self.dist, self.timeout = dist, float(timeout)
        self.interval = interval or max(0.05, min(1.0, self.timeout / 10))
        token = dist.broadcast_float(float(int.from_bytes(os.urandom(6), "little")))  # not the training RNGs
        host, port = os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ.get("MASTER_PORT", "0"))
        store = td.TCPStore(host, port, is_master=False, timeout=timedelta(seconds=self.timeout))
        self.store = td.PrefixStore(f"ganforge-watchdog/{int(token)}/", store)
        self.peers = [r for r in range(dist.world_size) if r != dist.rank]
        self.last: dict[int, tuple[bytes, float]] = {r: (b"", time.monotonic()) for r in self.peers}
        self._stop = threading.Event()
        self._beats = 0
        self._thread = threading.Thread(target=self._run, name="ganforge-watchdog", daemon=True)

    def start(self) -> "Watchdog":
        self._beat()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _beat(self) -> None:
        self._beats += 1
        self.store.set(str(self.dist.rank), str(self._beats))

    def _read(self) -> None:
        now = time.monotonic()
        for r in self.peers:
            value = self.store.get(str(r)) if self.store.check([str(r)]) else b""
            if value != self.last[r][0]:
                self.last[r] = (value, now)

    def silent(self, longer_than: float) -> list[int]:
        """Peers whose heartbeat has not moved for ``longer_than`` seconds."""
        now = time.monotonic()
        return [r for r in self.peers if now - self.last[r][1] > longer_than]

    def _run(self) -> None:
        store_down = None
        while not self._stop.wait(self.interval):
            try:
                self._beat()
                self._read()
                store_down = None
            except Exception:  # the store's host (node 0's launcher) is gone or unreachable
                store_down = store_down or time.monotonic()
                if time.monotonic() - store_down > self.timeout:
                    self._die("the rendezvous store at MASTER_ADDR:MASTER_PORT is unreachable")
                continue
            lost = self.silent(self.timeout)
            if lost:
                self._die(self.describe(lost))

    def describe(self, lost: list[int], why: str = "") -> str:
        ranks = ", ".join(str(r) for r in lost)
        why = why or f"no heartbeat for {self.timeout:g}s (train.dist_timeout)"
        return (f"lost rank {ranks} of {self.dist.world_size}: {why}; rank {self.dist.rank} stops. Restart the job "
                "(torchrun --max-restarts N resumes from the newest checkpoint)")

    def _die(self, why: str) -> None:
        print(f"error: {why}", file=sys.stderr, flush=True)
        os._exit(LostWorker.exit_code)

    def lost(self) -> list[int]:
        """After a failed collective: the peers whose heartbeat stops moving within a few intervals."""
        deadline = time.monotonic() + min(self.timeout, 4 * self.interval + 0.5)
        while time.monotonic() < deadline:
            time.sleep(self.interval)
        return self.silent(min(self.timeout, 3 * self.interval))


def watch(dist: Dist, timeout: float) -> Optional[Watchdog]:
    """A started ``Watchdog`` for a data-parallel run (None for one process, or where no store is reachable)."""
    if not dist.enabled or not os.environ.get("MASTER_PORT"):
        return None
    return Watchdog(dist, timeout).start()
