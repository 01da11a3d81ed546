"""``train.cuda_graph``: the whole training step replayed as one CUDA graph, or a logged reason why it stays eager.

At the sizes GANs are usually trained at (DCGAN 64x64, batch 64) a step is a few hundred small kernels and the GPU
waits on the host that launches them: capturing the step once and replaying it launches them all in one call.
A graph replays *exactly* the kernels it recorded, on the same memory, so capture is only correct when

- the step's work depends on nothing the host changes from step to step but which phases are due (a graph per
  set of due phases, e.g. with and without lazy R1, and per shape of the batches),
- nothing in it reads a device value on the host (fp16's GradScaler does, unfused optimizers' NaN guard does),
- the tensors it touches stay where they were: a restored checkpoint gives the optimizers new state tensors, so
  each graph remembers that *signature* and is captured again when it changes.

Learning rates change (``train.lr_decay``, a rollback's lower rate) but stay host numbers for the rest of the run:
while a step runs, every param group's ``lr`` is a device tensor (fused Adam takes one) holding the group's current
rate, one fill each; graphs read it from there. Warm-up steps run with the same tensors, so that every step of
a run with graphs goes through the same kernel arguments, captured or not (fused Adam rounds a float32 tensor rate
and a Python float one differently in its last bit), and a resumed run, which warms up at other steps, stays exact.

``refusal`` names what rules capture out before the run (the device, the options, the family's own declaration
``Trainer.capture_refusal``); the run then trains eagerly with one logged line, as ``train.compile`` does. Where
capture is allowed, ``GraphStep`` runs the first steps of every phase set eagerly on a side stream (lazy state:
optimizer moments, cuBLAS handles, cuDNN autotuning), then captures, then replays. The default CUDA generator is
registered with every graph (``torch.cuda.graph`` does it), so replays draw the same random numbers as eager steps
would. A capture that fails anyway (an op that syncs) leaves the run eager from there on, logged, with the RNG state
of before the capture.
"""
from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ganforge.families.contract import Batch, Trainer
from ganforge.train.engine import Updater, run_step

WARMUP_STEPS = 3  # eager steps of each phase set before its capture (the docs' whole-network example uses 3)
MAX_GRAPHS = 8  # distinct phase sets x batch shapes captured; more (unusual schedules) run eagerly
StepKey = tuple  # (the due phases' names, the batches' shapes)
StepResult = tuple[torch.Tensor, tuple[bool, ...]]  # run_step's: the stats vector, and which stats it produced
StepFn = Callable[[Trainer, Updater, tuple[str, ...], list[Batch], int], StepResult]


def refusal(tc, device: torch.device, trainer: Trainer, updater: Updater) -> Optional[str]:
    """Why this run's step cannot be captured as a CUDA graph, or None (``tc``: the run's TrainConfig)."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device (this run is on {device.type})"
    if tc.precision == "fp16":
        return "train.precision=fp16: the GradScaler checks for overflow on the host every step (use bf16)"
    unfused = [name for name, opt in updater.optimizers.items() if not opt.defaults.get("fused")]
    if unfused:
        return (f"optimizer {unfused[0]} (train.optimizer={tc.optimizer}) has no fused kernel: its NaN guard reads "
                "the finite check on the host, one sync per update")
    scheduled = [(name, key) for name, s in trainer.optimizers().items() for key in s.schedules if key != "lr"]
    if scheduled:
        return (f"optimizer {scheduled[0][0]} schedules {scheduled[0][1]} step by step, which a graph would bake in "
                "(only the learning rate is fed to it)")
    if tc.compile != "off":
        return f"train.compile={tc.compile} compiles the networks already: use one of the two"
    if updater.dist.enabled:
        return "data-parallel runs all-reduce gradients outside a graph (not captured here)"
    return trainer.capture_refusal()


def due_phases(trainer: Trainer, step: int) -> tuple[str, ...]:
    """The phases ``run_step`` runs at ``step``: one graph per distinct set."""
    return tuple(p.name for p in trainer.phases() if step % p.every == 0)


def step_key(trainer: Trainer, batches: list[Batch], step: int) -> StepKey:
    shapes = tuple((tuple(x.shape), x.dtype, tuple(y.shape), y.dtype) for x, y in batches)
    return due_phases(trainer, step), shapes


FED_EACH_STEP = ("params", "capturable", "lr", "initial_lr")  # not baked in: the lr goes in through a tensor


def state_signature(updater: Updater) -> tuple:
    """What a graph bakes in of the optimizers: hyper-parameters (betas, eps; not the learning rate, which is fed
    before every replay) and where parameters and state live. A restore changes it: the graph is captured again."""
    out: list = []
    for opt in updater.optimizers.values():
        for group in opt.param_groups:
            out.append(tuple((k, v) for k, v in sorted(group.items())
                             if k not in FED_EACH_STEP and isinstance(v, (int, float, bool, str, tuple))))
            for p in group["params"]:
                out.append(p.data_ptr())
                out.extend(v.data_ptr() for v in opt.state.get(p, {}).values() if torch.is_tensor(v))
    return tuple(out)


@dataclass
class Captured:
    """One captured step: its graph, the static inputs it reads and the stats it writes."""

    graph: "torch.cuda.CUDAGraph"
    inputs: list[Batch]
    values: torch.Tensor
    produced: tuple[bool, ...]
    signature: tuple

    def replay(self, batches: list[Batch]) -> StepResult:
        for (sx, sy), (x, y) in zip(self.inputs, batches):
            sx.copy_(x, non_blocking=True)
            sy.copy_(y, non_blocking=True)
        self.graph.replay()
        return self.values.clone(), self.produced  # a copy: the next replay overwrites the static output


@dataclass
class Rates:
    """One device tensor per param group, kept for the run (graphs read them at fixed addresses)."""

    tensors: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)

    @contextlib.contextmanager
    def fed(self, updater: Updater):
        """Every group's ``lr`` is its device tensor, filled with the group's current rate, until the step ends."""
        groups = [(name, i, g) for name, opt in updater.optimizers.items() for i, g in enumerate(opt.param_groups)]
        rates = [g["lr"] for _, _, g in groups]
        for (name, i, group), rate in zip(groups, rates):
            lr = self.tensors.get((name, i))
            if lr is None:
                device = group["params"][0].device
                lr = self.tensors[(name, i)] = torch.zeros((), dtype=torch.float32, device=device)
            lr.fill_(float(rate))  # a kernel with the number as its argument: no host sync
            group["lr"] = lr
        try:
            yield
        finally:
            for (_, _, group), rate in zip(groups, rates):
                group["lr"] = rate  # the loop, the log and checkpoints see numbers


class GraphStep:
    """``run_step`` with the same arguments and results, replayed from CUDA graphs once warmed up."""

    def __init__(self, log: Callable[[str], None], warmup: int = WARMUP_STEPS, max_graphs: int = MAX_GRAPHS):
        self.log, self.warmup, self.max_graphs = log, warmup, max_graphs
        self.graphs: dict[StepKey, Captured] = {}
        self.eager_steps: Counter = Counter()
        self.failed: Optional[str] = None  # set once a capture failed: eager from then on
        self._side: Optional[torch.cuda.Stream] = None  # made on first use (the bookkeeping is tested on CPUs)
        self.rates = Rates()
        self._said_full = False

    @property
    def side(self) -> "torch.cuda.Stream":
        if self._side is None:
            self._side = torch.cuda.Stream()
        return self._side

    def __call__(self, trainer: Trainer, updater: Updater, keys: tuple[str, ...], batches: list[Batch],
                 step: int) -> StepResult:
        with self.rates.fed(updater):
            return self._step(trainer, updater, keys, batches, step)

    def _step(self, trainer: Trainer, updater: Updater, keys: tuple[str, ...], batches: list[Batch],
              step: int) -> StepResult:
        """Replay this step's graph while what it baked in holds; else warm up, capture, or run eagerly."""
        if self.failed:
            return run_step(trainer, updater, keys, batches, step)
        key, signature = step_key(trainer, batches, step), state_signature(updater)
        entry = self.graphs.get(key)
        if entry is not None and entry.signature == signature:
            return entry.replay(batches)
        if entry is not None:  # restored or rolled back: the old graph would update stale tensors
            del self.graphs[key]
            self.eager_steps[key] = 0
        if self.eager_steps[key] < self.warmup:
            self.eager_steps[key] += 1
            return self._eager_on_side_stream(trainer, updater, keys, batches, step)
        if len(self.graphs) >= self.max_graphs:
            if not self._said_full:
                self.log(f"warning: train.cuda_graph: more than {self.max_graphs} distinct steps; the others run "
                         "eagerly")
                self._said_full = True
            return run_step(trainer, updater, keys, batches, step)
        return self._capture_and_replay(key, trainer, updater, keys, batches, step)

    def _eager_on_side_stream(self, trainer: Trainer, updater: Updater, keys: tuple[str, ...],
                              batches: list[Batch], step: int) -> StepResult:
        """A warm-up step, run for real (it is one of the run's steps) on the side stream, as capture needs."""
        main = torch.cuda.current_stream()
        self.side.wait_stream(main)
        with torch.cuda.stream(self.side):
            values, produced = run_step(trainer, updater, keys, batches, step)
        main.wait_stream(self.side)
        values.record_stream(main)
        return values, produced

    def _capture_and_replay(self, key: StepKey, trainer: Trainer, updater: Updater, keys: tuple[str, ...],
                            batches: list[Batch], step: int) -> StepResult:
        """Record the step into a new graph (nothing runs), then replay it: that replay is this step."""
        for opt in updater.optimizers.values():
            for group in opt.param_groups:
                group["capturable"] = True  # fused Adam's kernel is the same; the flag allows capture
        rng = torch.cuda.get_rng_state()
        inputs = [(x.clone(), y.clone()) for x, y in batches]  # static buffers, filled again before every replay
        graph = torch.cuda.CUDAGraph()
        cache = torch.is_autocast_cache_enabled()
        torch.set_autocast_cache_enabled(False)  # cached casts would outlive the capture (torch's graph notes)
        try:
            with torch.cuda.graph(graph):
                values, produced = run_step(trainer, updater, keys, inputs, step)
        except Exception as exc:  # noqa: BLE001 - whatever cannot be captured trains eagerly
            torch.cuda.set_rng_state(rng)  # capture ran nothing: this step's draws come again, eagerly
            self.failed = " ".join(str(exc).split())[:200] or type(exc).__name__
            self.log(f"warning: train.cuda_graph: capturing the step failed, training eagerly from step {step}: "
                     f"{type(exc).__name__}: {self.failed}")
            return run_step(trainer, updater, keys, batches, step)
        finally:
            torch.set_autocast_cache_enabled(cache)
        entry = Captured(graph, inputs, values, produced, state_signature(updater))
        self.graphs[key] = entry
        return entry.replay(batches)  # capture recorded the step without running it: run it now


def graph_step(tc, device: torch.device, trainer: Trainer, updater: Updater,
               log: Callable[[str], None]) -> Optional[GraphStep]:
    """A ``GraphStep`` for the loop when ``train.cuda_graph`` asks and the step allows it, else None (the loop then
    calls ``run_step`` itself); a refusal is logged once, in one line."""
    if not getattr(tc, "cuda_graph", False):
        return None
    reason = refusal(tc, device, trainer, updater)
    if reason:
        log(f"warning: train.cuda_graph is not used, the step runs eagerly: {reason}")
        return None
    log(f"train.cuda_graph: the step is captured as CUDA graphs after {WARMUP_STEPS} eager steps per phase set")
    return GraphStep(log)
