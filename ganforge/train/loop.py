"""The run: data, step counter, logging, guards, EMA, evaluation, signals, time limits, checkpoints.

``train(cfg, run_dir)`` builds data and networks (failing before anything is written when the input is bad), then
runs the family's phases (``engine.run_step``) step after step, logging to ``metrics.jsonl``, drawing the fixed
inputs into ``samples/`` every epoch, and checkpointing atomically. ``resume=True`` continues a run exactly where
its newest good checkpoint stopped: every network and optimizer, EMA copies, loss scales, RNG states, the
family's extra state and the position inside the epoch.

The loop knows no family: it handles named networks and optimizers, and the stats a trainer declares
(``family.py``). Under ``accelerate launch`` or ``torchrun`` every process runs ``train`` on its slice of the
global batch with gradients averaged before every update (``distributed.py``); only rank 0 logs and writes
files, and every decision that ends or rewinds the run is taken the same on all ranks.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from ganforge import viz
from ganforge.checkpoint import (capture_rng, flatten_modules, flatten_optimizer, list_checkpoints, load_latest,
                                 restore_rng, save_checkpoint)
from ganforge.config import RunConfig, dump_config
from ganforge.data import build_dataset, describe
from ganforge.errors import UserError
from ganforge.io_utils import atomic_write_bytes, atomic_write_text, check_output_dir
from ganforge.families import batch_multiple, build_networks, count_parameters, get_family, output_kind
from ganforge.train import compiling, determinism, fingerprint as fp, graphs, tensorboard
from ganforge.train.batches import BatchSource
from ganforge.train.distributed import Dist, LostWorker, elastic_resume, init_from_env, watch
from ganforge.train.diversity import choose_space
from ganforge.train.ema import EMA
from ganforge.train.engine import Updater, run_step
from ganforge.families.contract import RunContext, Trainer, trainer_class
from ganforge.train.init_from import init_ema, init_networks
from ganforge.train.guards import ClassShares, CollapseWatch, Event, NonFiniteGuard, tensors_finite
from ganforge.train.parts import LogWindow, Models, Position, RunFiles
from ganforge.train.optim import build_optimizers, make_optimizer, set_hyperparameters  # noqa: F401
from ganforge.train.schedule import lr_factor, scale_base_lr
from ganforge.train.signals import StopRequest


@dataclass
class RunSummary:
    run_dir: Optional[Path]
    steps: int
    epochs: int
    seconds: float
    params: dict[str, int]  # parameter count of every network
    last: dict[str, float]
    stopped: Optional[str] = None  # why the run ended before its budget: a signal name, or "interrupted"
    models: Optional[dict[str, nn.Module]] = field(default=None, repr=False)  # the trained networks and EMA copies
    rank: int = 0  # this process's rank in a data-parallel run: only rank 0 wrote run_dir

    @property
    def params_g(self) -> int:
        return self.params.get("G", 0)

    @property
    def params_d(self) -> int:
        return self.params.get("D", 0)


AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
FP16_DEVICES = ("cuda",)  # where train.precision=fp16 runs (GradScaler + float16 autocast)
SKIPPED = "skipped"  # the stat the loop adds to every family's: updates refused for a NaN/Inf
REWOUND = "rewound"  # what a step or an epoch's end returns after a rollback: go on from the restored position


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _match_param_layout(opt: torch.optim.Optimizer) -> None:
    """Give loaded moment tensors their parameter's strides (checkpoints store them contiguous).

    Fused/foreach Adam walks parameter and state storage in lockstep, so a channels_last weight with an NCHW
    ``exp_avg`` would pair the wrong elements: resume would silently diverge.
    """
    for group in opt.param_groups:
        for p in group["params"]:
            for key, val in opt.state.get(p, {}).items():
                if torch.is_tensor(val) and val.shape == p.shape and val.stride() != p.stride():
                    opt.state[p][key] = torch.empty_like(p, dtype=val.dtype).copy_(val)


def _opt_key(name: str) -> str:
    """Checkpoint key of an optimizer ("G" -> "opt_g", as ganforge 0.1 wrote them)."""
    return f"opt_{name.lower()}"


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop lines logged after the checkpoint so the history has no duplicates."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("step", 0) <= step:
            keep.append(line)
    atomic_write_text(path, "".join(l + "\n" for l in keep))


def _check_new_run_dir(run_dir: Path) -> None:
    """A new run needs a new (or empty) folder that can be made: refused in one line before any work."""
    check_output_dir(run_dir)
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if (run_dir / "config.yaml").is_file():
            raise UserError(f"--out {run_dir} is an existing run: continue it with --resume {run_dir}, "
                            "or choose another --out")
        raise UserError(f"--out {run_dir} is a folder that already holds files and no ganforge run (nothing to "
                        "--resume there): choose a new or empty folder")


def train(
    cfg: RunConfig,
    run_dir: Optional[Path],
    *,
    resume: bool = False,
    dry_run: bool = False,
    strict_data: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    stop_after_steps: Optional[int] = None,  # for tests: stop early as if killed, after saving a checkpoint
    force: bool = False,  # resume even when the config or the dataset changed since the checkpoint
    detect_anomaly: bool = False,  # torch.autograd anomaly detection: slow, names the op that made a NaN
    init_from: Optional[Path] = None,  # fine-tuning: start from this finished run's weights (train/init_from.py)
) -> RunSummary:
    if cfg.train.deterministic and cfg.train.device != "cpu" and torch.cuda.is_available():
        determinism.check_cublas_workspace(log)  # before this process's CUDA work starts
    resume = resume or (not dry_run and elastic_resume(run_dir))  # torchrun --max-restarts: continue the run
    if run_dir is not None and not resume and not dry_run:
        _check_new_run_dir(Path(run_dir))  # before anything is built or logged
    fresh = run_dir is not None and not resume and not dry_run
    existed = fresh and Path(run_dir).exists()  # an empty folder the user made: emptied again, not removed
    dist = init_from_env(cfg.train.device, timeout=cfg.train.dist_timeout)  # one process of a data-parallel run
    dog = watch(dist, cfg.train.dist_timeout)  # a lost peer: one line naming it, within train.dist_timeout
    try:
        with determinism.kernels(cfg.train.deterministic, dist.device):
            torch.autograd.set_detect_anomaly(detect_anomaly)
            run = Run(cfg, dist, None if dry_run or run_dir is None else Path(run_dir),
                      log=log if dist.is_main else _silent, strict_data=strict_data, with_evaluator=not dry_run,
                      init_from=init_from)
            if dry_run:
                run.describe()
                return run.summary(0.0)
            run.open(resume=resume, force=force)  # refusals (a changed config) come before the
            run.describe()  # description, so that a refused resume is one line
            return run.loop(progress=progress and dist.is_main, stop_after_steps=stop_after_steps)
    except BaseException as exc:
        lost = dog.lost() if dog is not None and isinstance(exc, Exception) and not isinstance(exc, UserError) else []
        if fresh and dist.is_main and _discard_unstarted(Path(run_dir), existed):
            why = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped by an error"
            note = (f"{why} before the first checkpoint: removed {run_dir}, which held nothing to resume; "
                    f"start again with the same --out")
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(note) from None
            log(note)
        if lost:  # a collective failed because a peer is gone: say which, not a gloo / NCCL traceback
            raise LostWorker(dog.describe(lost, "a collective failed and its heartbeat stopped")) from None
        raise
    finally:
        if dog is not None:
            dog.stop()
        dist.shutdown()


def accumulation(per_device: Optional[int], local: int, multiple: int) -> int:
    """Micro-batches per update for train.batch_per_device; a UserError unless they split the share evenly."""
    if per_device is None or per_device == local:
        return 1
    if per_device > local:
        raise UserError(f"train.batch_per_device={per_device} is more than each device's share of the batch "
                        f"({local}): use at most {local}, or leave it unset")
    if local % per_device or per_device % multiple:
        raise UserError(f"train.batch_per_device={per_device} must divide each device's share of the batch "
                        f"({local}) and be a multiple of the model's batch multiple {multiple}")
    return local // per_device


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the one line that says what became of the run directory."""


def _discard_unstarted(run_dir: Path, existed: bool) -> bool:
    """Remove what a new run wrote when it stopped before its first checkpoint (a dead end otherwise: nothing
    to ``--resume``, and ``--out`` refuses the folder); True when it did."""
    import shutil

    trained = [p for p in list_checkpoints(run_dir / "checkpoints") if not p.name.endswith("-s00000000")]
    if not run_dir.is_dir() or trained:  # a step-0 checkpoint holds no training: resuming it is starting again
        return False
    if not existed:
        shutil.rmtree(run_dir, ignore_errors=True)
        return True
    for child in run_dir.iterdir():
        shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
    return True


def _silent(_: str) -> None:
    pass


class Run:
    """One training run. ``__init__`` builds and validates everything (data, networks, optimizers, the run's
    parts) before anything is written; ``open`` makes or restores the run directory; ``loop`` trains."""

    def __init__(self, cfg: RunConfig, dist: Dist, run_dir: Optional[Path], *, log: Callable[[str], None],
                 strict_data: bool, with_evaluator: bool, init_from: Optional[Path] = None):
        tc, mc = cfg.train, cfg.model
        self.cfg, self.dist, self.log = cfg, dist, log
        self.family = get_family(mc.family)
        self.output = output_kind(mc)  # images, points or translations: how samples are drawn and shown
        self.device = dist.device
        if tc.threads:
            torch.set_num_threads(tc.threads)
        self._check_options()
        # the data: one fixed order per epoch, this rank's slice of every global batch
        self.dataset = build_dataset(cfg.data, mc, seed=tc.seed, strict=strict_data)
        self._check_data_kind()
        self._check_labels()
        dist.local_batch(tc.batch_size, batch_multiple(mc))  # a UserError unless the batch splits evenly
        self.source = BatchSource(self.dataset, tc.batch_size, tc.seed, cfg.data.num_workers, group=tc.d_steps,
                                  rank=dist.rank, world_size=dist.world_size, device=self.device)  # on a GPU
        total_steps = tc.steps if tc.steps is not None else tc.epochs * self.source.steps_per_epoch
        # built before seeding (the evaluator's extractor draws initial weights): evaluation never shifts training
        self.evaluator = self._make_evaluator(with_evaluator)
        self.diversity_space = choose_space(cfg.data.spec, mc)  # chosen once: diversities compared in one space
        seed_everything(tc.seed)
        self.models = self._build_models(total_steps, init_from)
        self.keys = (*self.models.trainer.stat_keys, SKIPPED)
        # train.cuda_graph (train/graphs.py): the step's CUDA-graph replay, or None: run_step
        self.graph_step = graphs.graph_step(tc, self.device, self.models.trainer, self.models.updater, log)
        self.at = Position(end=total_steps)
        self.window = LogWindow.zeros(self.keys, self.device)
        gc = cfg.guard
        self.collapse = CollapseWatch(gc.d_fake_floor, gc.d_fake_windows, gc.collapse_ratio,
                                      class_fade_share=gc.class_fade_share, space=self.diversity_space.name)
        self.nonfinite = NonFiniteGuard(gc.max_skips, gc.max_rollbacks)
        self.real_spread = RealSpread(self.dataset, self.diversity_space, self._real_images)
        self.files = RunFiles(run_dir, is_main=dist.is_main, tensorboard_on=tc.tensorboard)
        self.fingerprint = fp.fingerprint(cfg, self.dataset)

    # ------------------------------------------------------------------ set-up

    def _check_options(self) -> None:
        tc = self.cfg.train
        if tc.precision == "fp16" and self.device.type not in FP16_DEVICES:
            raise UserError(f"train.precision=fp16 needs a CUDA device (this run is on {self.device}): use bf16")
        if tc.sync_batchnorm and self.dist.enabled and self.device.type != "cuda":
            raise UserError("train.sync_batchnorm needs CUDA (torch's SyncBatchNorm has no CPU implementation): "
                            "leave it off, or drop BatchNorm with --set model.batch_norm=false")
        if self.cfg.eval.every and self.family.translation:
            raise UserError(f"eval.every={self.cfg.eval.every}: evaluation during training is for noise-to-image "
                            "families; score a translation run after training with 'ganforge evaluate RUN_DIR'")
        if tc.tensorboard and self.dist.is_main:
            tensorboard.require()  # before anything is written
        launcher_precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
        if launcher_precision in ("bf16", "fp16") and launcher_precision != tc.precision:
            self.log(f"warning: accelerate's mixed precision ({launcher_precision}) is not applied; ganforge uses "
                     f"train.precision={tc.precision}: pass --set train.precision={launcher_precision}")

    def _check_data_kind(self) -> None:
        """The data must be what the family declares it learns from: (A, B) pairs for a translating family,
        single images (or points) for the others; refused here, before a model is built or a folder made."""
        spec, family = self.cfg.data.spec, self.cfg.model.family
        pairs = self.dataset.kind == "pairs"
        if pairs and not self.family.translation:
            raise UserError(f"--data {spec} holds (A, B) image pairs, for image-to-image families; {family!r} draws "
                            "from noise and learns from single images: give it an image set, or pick a "
                            "translation preset (see 'ganforge presets')")
        if self.family.translation and not pairs:
            raise UserError(f"{family!r} translates images and learns from (A, B) pairs, but --data {spec} holds "
                            f"single {self.dataset.kind}: use paired:DIR, unpaired:DIR, a digits-* task or a set "
                            "prepared with 'ganforge prepare --pairs'")

    def _check_labels(self) -> None:
        mc = self.cfg.model
        if not self.family.conditional:
            return
        if getattr(self.dataset, "num_classes", None) is None:
            raise UserError(f"family {mc.family!r} needs class labels but {self.cfg.data.spec!r} has none: "
                            "use a labelled set (mnist-embedded, mnist, cifar10, ...)")
        if self.dataset.num_classes > mc.num_classes:
            raise UserError(f"{self.cfg.data.spec!r} has {self.dataset.num_classes} classes but model.num_classes="
                            f"{mc.num_classes}: --set model.num_classes={self.dataset.num_classes}")

    def _make_evaluator(self, wanted: bool):
        """Rank 0's periodic evaluator (the other ranks await its verdict), or None."""
        cfg = self.cfg
        if not (wanted and cfg.eval.every and self.dist.is_main):
            return None
        from ganforge.train.periodic import PeriodicEvaluator

        return PeriodicEvaluator(cfg.eval, cfg.model, cfg.data.spec,
                                 lambda n, gen: self.models.trainer.generator_inputs(n, gen),
                                 self.device, cfg.data.root, log=self.log)

    def _build_models(self, total_steps: int, init_from: Optional[Path]) -> Models:
        """Networks on the device in their memory format, identical on every rank; optimizers, EMA copies, loss
        scalers and the family's trainer; the fixed inputs of the sample grids."""
        tc, dist = self.cfg.train, self.dist
        nets = build_networks(self.cfg.model)
        source_ema = init_networks(nets, init_from, self.cfg) if init_from is not None else None  # --init-from
        params = {name: count_parameters(net) for name, net in nets.items()}
        memory_format = torch.channels_last if (tc.channels_last and self.family.convolutional) \
            else torch.contiguous_format
        for net in nets.values():
            net.to(self.device, memory_format=memory_format)
            dist.broadcast_module(net)  # identical replicas from the first step
        ctx = RunContext(self.device, memory_format, AMP_DTYPES[tc.precision], dist.rank, dist.world_size,
                         total_steps, self.dataset)
        trainer: Trainer = trainer_class(self.family.trainer)(self.cfg, nets, ctx)
        specs = trainer.optimizers()
        optimizers = build_optimizers(specs, nets, tc, self.device)
        ema = {n: EMA(nets[n], tc.ema.decay, tc.ema.start_step) for n in trainer.ema_networks
               if tc.ema.enabled and n in nets}
        init_ema(ema, source_ema)  # --init-from: the source run's EMA copies (train/init_from.py)
        if tc.sync_batchnorm and dist.enabled:  # after the EMA copies: their BatchNorm re-estimation stays local
            for name, net in nets.items():  # same parameter objects: the optimizers still hold them
                nets[name] = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        scalers = {name: torch.amp.GradScaler(self.device.type) for name in specs} if tc.precision == "fp16" else {}
        updater = Updater(nets, optimizers, {n: s.networks for n, s in specs.items()}, dist, scalers,
                          accumulation(tc.batch_per_device, dist.local_batch(tc.batch_size, batch_multiple(self.cfg.model)),
                                       batch_multiple(self.cfg.model)))
        fixed = trainer.fixed_inputs(tc.seed, tc.n_fixed)
        return Models(nets, params, ctx, trainer, optimizers, ema, updater, fixed, specs)

    def _probe_step(self, nets: dict[str, nn.Module]) -> None:
        """One training step of copies of the networks (own trainer and optimizers): ``train.compile``'s probe."""
        tc = self.cfg.train
        trainer = trainer_class(self.family.trainer)(self.cfg, nets, self.models.ctx)
        specs = trainer.optimizers()
        optimizers = build_optimizers(specs, nets, tc, self.device)
        updater = Updater(nets, optimizers, {n: s.networks for n, s in specs.items()})
        n = self.dist.local_batch(tc.batch_size, batch_multiple(self.cfg.model))
        items = [self.dataset[i % len(self.dataset)] for i in range(n)]
        x = torch.stack([torch.as_tensor(item[0]) for item in items]).to(self.device)
        y = torch.as_tensor([int(item[1]) for item in items]).to(self.device)
        run_step(trainer, updater, (*trainer.stat_keys, SKIPPED), [(x, y)] * tc.d_steps, 0)

    def describe(self) -> None:
        mc, tc = self.cfg.model, self.cfg.train
        shape = "2-D points" if self.output == "points" else f"{mc.image_size}px"
        nets = ", ".join(f"{name} {n:,}" for name, n in self.models.params.items())
        self.log(f"data: {describe(self.dataset)}")
        self.log(f"models: {nets} parameters ({mc.family}, {shape}, device {self.device})")
        if self.cfg.init_from:
            self.log(f"fine-tuning: weights from {self.cfg.init_from}, fresh optimizers at step 0")
        self.log(self.diversity_space.describe())
        if self._class_watch_on():
            gc = self.cfg.guard
            self.log(f"class-fade watch: {gc.class_samples} samples classified by {self.diversity_space.name} at each "
                     f"sample grid from {gc.class_fade_from:.0%} of the budget on; a class under "
                     f"{gc.class_fade_share:g}x its fair share is reported")
        self.log(f"budget: {self.at.end:,} steps of batch {tc.batch_size} "
                 f"({self.source.steps_per_epoch} steps per epoch)")
        if self.dist.enabled:
            self.log(f"data-parallel: {self.dist.world_size} processes, "
                     f"{self.dist.local_batch(tc.batch_size, batch_multiple(mc))} samples each per batch, "
                     f"precision {tc.precision}")

    def summary(self, seconds: float, stopped: Optional[str] = None) -> RunSummary:
        return RunSummary(self.files.run_dir, self.at.step, self.at.epoch, seconds, self.models.params,
                          self.window.last, stopped, self.models.all_models(), self.dist.rank)

    @property
    def run_dir(self) -> Path:
        assert self.files.run_dir is not None, "a dry run has no run directory"
        return self.files.run_dir

    def open(self, *, resume: bool, force: bool) -> None:
        """Create the run directory (or restore from it); nothing was written before this point."""
        run_dir = self.run_dir
        if not resume:
            _check_new_run_dir(run_dir)
        compiling.compile_networks(self.models.nets, self.cfg.train.compile, self.device, self._probe_step,
                                   self.log)
        if resume:
            self._resume(force)
        else:
            self.dist.barrier()  # every rank has checked the directory is new before rank 0 writes into it
            if self.dist.is_main:
                _check_new_run_dir(run_dir)
                run_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_text(run_dir / "config.yaml", dump_config(self.cfg))
        if self.dist.is_main:
            (run_dir / "samples").mkdir(exist_ok=True)
        self.dist.barrier()

    def _resume(self, force: bool) -> None:
        ckpt = load_latest(self.files.ckpt_root, map_location=self.device, warn=self.log)
        diffs = fp.mismatch(ckpt.state.get("fingerprint", {}), self.fingerprint)
        if diffs and not force:
            raise UserError(f"{self.run_dir} was trained with something else: {'; '.join(diffs[:5])}"
                            f"{' ...' if len(diffs) > 5 else ''} (pass --force to resume anyway)")
        if diffs:
            self.log(f"warning: resuming despite changes (--force): {'; '.join(diffs)}")
        self._restore(ckpt)
        self.at.best_value = ckpt.state.get("best_value")
        self.window.load_state(ckpt.state.get("log_window"))
        self.dist.barrier()  # every rank has read the checkpoint before rank 0 writes anything
        if self.dist.is_main:
            _truncate_metrics(self.run_dir / "metrics.jsonl", self.at.step)
        self.log(f"resumed {self.run_dir} from {ckpt.path.name}: step {self.at.step}, epoch {self.at.epoch}, "
                 f"batch {self.at.pos}")

    def _restore(self, ckpt) -> None:
        """Networks, EMA copies, optimizers, loss scales, RNG states, the family's extra state, the position."""
        m = self.models
        for name, net in m.nets.items():
            net.load_state_dict(ckpt.module_state(name))
        for name, ema in m.ema.items():
            ema.model.load_state_dict(ckpt.module_state(f"{name}_ema") or ckpt.module_state(name))
        for name, opt in m.optimizers.items():
            opt.load_state_dict(ckpt.optimizer_state(_opt_key(name)))
            _match_param_layout(opt)
        restore_rng(ckpt.optim, ckpt.state["rng"])
        self.dist.sync_rng()  # a CUDA generator is per device: every rank continues rank 0's stream
        saved_scalers = ckpt.state.get("scalers") or {}
        for name, scaler in m.updater.scalers.items():
            if name.lower() in saved_scalers:
                scaler.load_state_dict(saved_scalers[name.lower()])
        extra = {k[len("extra."):]: v for k, v in ckpt.optim.items() if k.startswith("extra.")}
        m.trainer.load_extra_state(extra, ckpt.state.get("extra", {}))
        self.at.step, self.at.epoch, self.at.pos = ckpt.state["step"], ckpt.state["epoch"], ckpt.state["position"]

    # ------------------------------------------------------------------ the loop

    def loop(self, *, progress: bool, stop_after_steps: Optional[int]) -> RunSummary:
        """Train from the current position to the end of the budget, top to bottom:

        the untrained generator's grid and a first checkpoint; then epoch after epoch, step after step: the
        family's phases, EMA, stats; a metrics line and the guards every ``log_every`` steps; evaluation every
        ``eval.every``; the sample grid and a checkpoint every epoch; a signal or the time limit ends the run with
        a checkpoint of the exact step; at the end, the last grid, the final checkpoint and the pictures.
        """
        stop = StopRequest()
        t0 = time.perf_counter()
        self.files.open(progress=progress, step=self.at.step, total=self.at.end)
        stopped: Optional[str] = None
        try:
            with stop.installed():
                if self.at.step == 0:
                    self.draw_fixed()  # the untrained generator: the first frame of the progression
                    self.save("start")  # a rollback target before the first epoch ends
                self.models.train_mode()
                self.window.start_clock()
                while self.at.step < self.at.end and stopped is None:
                    outcome = self._steps_to_epoch_end(stop, stop_after_steps, t0)
                    if outcome is None and self.at.pos >= self.source.steps_per_epoch:
                        outcome = self._end_of_epoch()
                    stopped = None if outcome == REWOUND else outcome
                if stopped:
                    self.save(stopped)  # the exact current step: resume continues with the next one
                else:
                    self.draw_fixed()
                    self.save("final")
        finally:
            self.files.close()
        return self._finish(stopped, time.perf_counter() - t0)

    def _steps_to_epoch_end(self, stop: StopRequest, stop_after_steps: Optional[int], t0: float) -> Optional[str]:
        """Steps from the current position: None when the epoch or the budget ran out, REWOUND after a rollback
        (start again from the restored position), else the reason to stop."""
        for batches in self.source.epoch(self.at.epoch, start_step=self.at.pos):
            batches = [(x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True))
                       for x, y in batches]
            self._train_step(batches)
            self.window.images += sum(b[0].shape[0] for b in batches) * self.dist.world_size
            self._check_time_limit(t0)
            if self.at.step % self.cfg.train.log_every == 0 or self.at.step == self.at.end:
                outcome = self._log_window()
                if outcome:
                    return outcome
            self.files.bar.update(1)
            if self.cfg.eval.every and self.at.step % self.cfg.eval.every == 0:
                self.evaluate()
            if self.at.step >= self.at.end:
                return None
            if self.dist.any(stop.signum is not None) or (stop_after_steps is not None
                                                         and self.at.step >= stop_after_steps):
                return stop.name or "interrupted"
        return None

    def _train_step(self, batches) -> None:
        """The family's phases, then the EMA copies; the stats stay on the device."""
        tc, m = self.cfg.train, self.models
        decay = None if tc.lr_decay == "none" else lr_factor(self.at.step, self.at.end, tc.lr_decay,
                                                             tc.lr_decay_start)
        for name, opt in m.optimizers.items():  # the specs' schedules and train.lr_decay (train/optim.py)
            set_hyperparameters(opt, m.specs[name], self.at.step, self.at.end, decay)
        values, produced = (self.graph_step or run_step)(m.trainer, m.updater, self.keys, batches,
                                                         self.at.step)  # graphs.py
        for name, ema in m.ema.items():
            ema.update(m.nets[name], self.at.step)
        self.window.add(values, produced, refused=values[-1] > 0)
        self.at.step += 1
        self.at.pos += 1

    def _check_time_limit(self, t0: float) -> None:
        limit = self.cfg.train.time_limit
        if (limit is not None and self.at.step < self.at.end
                and self.dist.any(time.perf_counter() - t0 >= limit)):  # rank clocks differ
            self.log(f"time limit of {limit:.0f}s reached at step {self.at.step}")
            self.at.end = self.at.step  # ends the run here, logged, drawn and checkpointed like any last step

    def _log_window(self) -> Optional[str]:
        """One metrics line (the host reads the device's sums here, once); then the guards decide."""
        w = self.window
        dt = time.perf_counter() - w.started
        last = w.means(self.dist.all_reduce_mean(w.sums).tolist())  # over the ranks: the global batch's stats
        rec = {"step": self.at.step, "epoch": self.at.epoch, **last,
               **{f"lr_{name.lower()}": opt.param_groups[0]["lr"] for name, opt in self.models.optimizers.items()},
               "img_s": round(w.images / max(dt, 1e-9), 1), "time": round(time.time(), 3)}
        self.files.write(rec)
        self.files.scalars(rec, self.at.step)
        w.restart()
        outcome = self._nonfinite_guard()
        if outcome:
            return outcome
        trainer = self.models.trainer
        watched = {role: last.get(stat) if stat else None for role, stat in
                   (("fake_score", trainer.fake_score_stat), ("g_loss", trainer.g_loss_stat))}
        for e in self.collapse.on_log(**watched):
            self.event(e)
            outcome = outcome or self._collapse_action(e)
        self.files.bar.set_postfix({k: f"{last[k]:.3f}" for k in self.keys[:4] if k in last}, refresh=False)
        return outcome

    def _nonfinite_guard(self) -> Optional[str]:
        """``guard.max_skips`` refused updates in a row: the state went bad; roll back, or stop out of rollbacks."""
        worst = int(self.dist.all_reduce_mean(self.window.worst_skips.reshape(1)).item())
        self.window.worst_skips.zero_()
        if worst < self.nonfinite.max_skips:
            return None
        if not self.roll_back(f"{worst} updates in a row had NaN/Inf losses or gradients"):
            return "diverged"
        return REWOUND

    def _collapse_action(self, e: Event) -> Optional[str]:
        """Apply guard.on_collapse to a finding: None, REWOUND or a reason to stop."""
        action = self.cfg.guard.on_collapse
        if action == "stop":
            return e.kind
        if action == "rollback":
            return REWOUND if self.roll_back(e.message) else e.kind
        return None

    def _end_of_epoch(self) -> Optional[str]:
        tc = self.cfg.train
        self.at.epoch += 1
        self.at.pos = 0
        outcome = None
        if self._epoch_due(tc.sample_every):
            for e in self.draw_fixed():
                outcome = outcome or self._collapse_action(e)
            if outcome:
                return outcome
        if self._epoch_due(tc.checkpoint_every) and self.at.step < self.at.end:
            self.save("epoch")
        return None

    def _epoch_due(self, every: int) -> bool:
        """Every ``every`` epochs, and (``train.min_interval_steps``) only once a new interval of steps began since
        the previous such epoch: a pure function of the position, so a resumed run draws and saves as a straight one."""
        m = self.cfg.train.min_interval_steps
        if self.at.epoch % every:
            return False
        previous = self.at.step - every * self.source.steps_per_epoch
        return m <= 0 or self.at.step // m > previous // m

    def roll_back(self, why: str) -> bool:
        """Back to the newest good checkpoint with lower learning rates; False when out of rollbacks."""
        if not self.nonfinite.can_roll_back():
            self.event(Event("stop", f"{why}; already rolled back {self.nonfinite.rollbacks} times "
                                     "(guard.max_rollbacks)"))
            return False
        ckpt = load_latest(self.files.ckpt_root, map_location=self.device, warn=self.log)
        self._restore(ckpt)
        self.nonfinite.rollbacks += 1
        self.window.skips_in_a_row.zero_()
        factor = self.cfg.guard.rollback_lr_factor
        for opt in self.models.optimizers.values():
            scale_base_lr(opt, factor)
        self.event(Event("rollback", f"{why}: rolled back to {ckpt.path.name} (step {self.at.step}), learning "
                                     f"rates x{factor:g} (rollback {self.nonfinite.rollbacks} of "
                                     f"{self.cfg.guard.max_rollbacks})"))
        self.files.bar.n = self.at.step
        return True

    def _finish(self, stopped: Optional[str], seconds: float) -> RunSummary:
        if stopped:
            self.log(f"stopped ({stopped}) at step {self.at.step} with a checkpoint; continue with: "
                     f"ganforge train --resume {self.run_dir}")
            return self.summary(seconds, stopped)
        if self.at.step > 0 and self.dist.is_main:
            self._write_pictures()
        if self.dataset.skipped:
            self.log(f"warning: {self.dataset.skip_note()}; see {self.run_dir / 'skipped_files.txt'}")
        self.log(f"done: {self.at.step} steps in {seconds:.0f}s; run directory {self.run_dir}")
        self._log_classes()
        return self.summary(seconds)

    # ------------------------------------------------------------------ checkpoints, evaluation

    def save(self, reason: str, best: bool = False) -> Optional[Path]:
        """Every rank calls this (it holds collectives); rank 0 writes the checkpoint while the others wait."""
        for ema in self.models.ema.values():
            ema.refresh_batchnorm(self.models.trainer.generator_inputs, self.at.step)
        if self.dist.enabled:  # the log window as the next metrics line will average it, saved and kept alike
            self.window.sums.copy_(self.dist.all_reduce_mean(self.window.sums))
        path = self._write_checkpoint(reason, best) if self.dist.is_main else None
        self.dist.barrier()
        return path

    def _write_checkpoint(self, reason: str, best: bool) -> Optional[Path]:
        m = self.models
        modules = {name: net.state_dict() for name, net in m.nets.items()}
        modules.update({f"{name}_ema": ema.model.state_dict() for name, ema in m.ema.items()})
        weights = flatten_modules(modules)
        if not tensors_finite(weights.values()):
            self.log(f"warning: not saving a checkpoint at step {self.at.step}: the weights hold NaN/Inf")
            return None
        weights.update({f"fixed.{k}": v.contiguous() for k, v in m.fixed.tensors.items()})
        rng_tensors, rng_meta = capture_rng()
        optim: dict[str, torch.Tensor] = dict(rng_tensors)
        meta: dict[str, Any] = {}
        for name, opt in m.optimizers.items():
            tensors, meta[_opt_key(name)] = flatten_optimizer(_opt_key(name), opt.state_dict())
            optim.update(tensors)
        extra_tensors, extra_meta = m.trainer.extra_state()
        optim.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in extra_tensors.items()})
        state = {"position": self.at.pos, "config": self.cfg.model_dump(mode="json"), "optimizers": meta,
                 "rng": rng_meta, "log_window": self.window.state(), "best_value": self.at.best_value,
                 "reason": reason, "fingerprint": self.fingerprint, "time": time.time(), "extra": extra_meta}
        if m.updater.scalers:  # fp16 loss scales: plain numbers
            state["scalers"] = {name.lower(): s.state_dict() for name, s in m.updater.scalers.items()}
        if self.dataset.skipped:  # unreadable images, listed for the user (and counted in the log)
            text = "".join(f"{p}\n" for p in self.dataset.skipped)  # a name need not be UTF-8: its bytes as \xNN
            atomic_write_bytes(self.run_dir / "skipped_files.txt", text.encode("utf-8", "backslashreplace"))
        return save_checkpoint(self.files.ckpt_root, epoch=self.at.epoch, step=self.at.step, weights=weights,
                               optim=optim, state=state, keep=self.cfg.train.keep_checkpoints, best=best)

    def evaluate(self) -> None:
        """Rank 0 evaluates; every rank takes part in saving checkpoints/best when the metric improved."""
        improved = False
        if self.evaluator is not None:
            values = self.evaluator(self._sampler(), self.at.step)
            self.files.write({"step": self.at.step, "epoch": self.at.epoch, "eval": values})
            self.files.scalars(values, self.at.step, prefix="eval")
            self.log("eval @ step {}: {}".format(self.at.step, ", ".join(f"{k}={v:.4g}" for k, v in values.items())))
            key = self.evaluator.best_key()
            if key is not None and key in values:
                from ganforge.metrics.registry import is_better

                if is_better(key, values[key], self.at.best_value):
                    self.at.best_value = values[key]
                    improved = True
        if self.dist.any(improved):
            self.save("best", best=True)

    def event(self, e: Event) -> None:
        self.files.write(e.record(self.at.step))
        self.log(f"warning: step {self.at.step}: {e.message}")
        self.files.tb_event(e.kind, e.message, self.at.step)

    # ------------------------------------------------------------------ samples and the watches on them

    def _sampler(self) -> nn.Module:
        """The network that draws samples: the generator's EMA copy when there is one (BatchNorm refreshed)."""
        name = self.family.generator
        ema = self.models.ema.get(name)
        if ema is None:
            return self.models.nets[name]
        ema.refresh_batchnorm(self.models.trainer.generator_inputs, self.at.step)
        return ema.model

    def draw_fixed(self) -> list[Event]:
        """Draw the fixed inputs into samples/ and check their diversity; returns the watch's findings."""
        trainer, fixed = self.models.trainer, self.models.fixed
        sampler = self._sampler()
        was_training = sampler.training
        sampler.eval()
        with torch.inference_mode():
            fake = trainer.draw(sampler, fixed)
            picture = trainer.picture(fake, fixed) if self.dist.is_main else None
        sampler.train(was_training)
        diversity = self.dist.broadcast_float(self.diversity_space.diversity(fake))
        findings = self.collapse.on_samples(diversity) if self.at.step > 0 else []
        for e in findings:
            self.event(e)
        if fixed.labels is not None and self.at.step >= self.at.end // 4:  # past the start: every G is noise then
            self._watch_labels(fake, fixed.labels)
        if self._class_watch_on() and self.dist.is_main and self.at.step >= self._class_watch_from():
            self._watch_classes(sampler)
        if self.dist.is_main:
            path = self.run_dir / "samples" / f"e{self.at.epoch:04d}-s{self.at.step:08d}.png"
            if self.output == "points":
                viz.save_points_plot(self.dataset.tensor[:2000], fake, path, title=f"step {self.at.step}")
            else:
                viz.save_grid(picture[0], path, nrow=picture[1])
                self.files.grid(picture[0], picture[1], self.at.step)
        return findings

    def _watch_labels(self, fake: torch.Tensor, labels: torch.Tensor) -> None:
        """Warn when a conditional G ignores z. A warning only: rolling back cannot teach G to use z."""
        real = self.real_spread.of(labels)
        if real is None:
            return
        spread = self.dist.broadcast_float(self.diversity_space.label_spread(fake, labels))
        for e in self.collapse.on_label_spread(spread, real):
            self.event(e)

    def _class_watch_on(self) -> bool:
        """The data have an in-domain classifier (the digit classifier on digits) and the check is not turned off."""
        gc = self.cfg.guard
        # data.classes keeps some classes only: the classifier's others would all read as faded
        return (self.diversity_space.num_classes > 1 and gc.class_samples > 0 and gc.class_fade_share > 0
                and not self.cfg.data.classes)

    def _class_watch_from(self) -> int:
        """The first step checked: past the start, when every generator still draws noise."""
        return max(1, int(self.cfg.guard.class_fade_from * self.at.end))

    def _watch_classes(self, sampler: nn.Module) -> None:
        """Warn when a class fades out of the samples. A warning only: a rollback would not bring it back."""
        for e in self.collapse.on_class_shares(self._class_shares(sampler)):
            self.event(e)

    def _class_shares(self, sampler: nn.Module, batch: int = 250) -> ClassShares:
        """``guard.class_samples`` samples from a seed of their own, classified; the training RNG is untouched (the
        fork keeps what a family's sampling draws from it, e.g. StyleGAN's noise), so resume stays exact."""
        n, space = self.cfg.guard.class_samples, self.diversity_space
        gen = torch.Generator().manual_seed(self.cfg.train.seed + 24_680)
        was_training = sampler.training
        sampler.eval()
        preds = []
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), \
                torch.inference_mode():
            for i in range(0, n, batch):
                inputs = self.models.trainer.generator_inputs(min(batch, n - i), gen)
                preds.append(space.classify(sampler(*inputs).float().cpu().clamp_(-1, 1)))
        sampler.train(was_training)
        return ClassShares.of(torch.cat(preds), space.num_classes)

    def _real_images(self, indices) -> torch.Tensor:
        """The real images held by these dataset items (for pictures and the conditional watch's yardstick)."""
        return self.models.trainer.real_images(torch.stack([self.dataset[int(i)][0] for i in indices]))

    # ------------------------------------------------------------------ the end

    def _log_classes(self) -> None:
        """The end-of-run line of the class-fade watch: how evenly the last samples cover the classes."""
        classes = self.collapse.last_classes
        if classes is None:
            return
        _, _, share = classes.lowest()
        faded = share < self.cfg.guard.class_fade_share / classes.counts.shape[1]
        hint = "; a class faded out (ganforge evaluate RUN_DIR counts 10,000 samples)" if faded else ""
        self.log(f"{'warning: ' if faded else ''}classes at the end ({self.diversity_space.name}): "
                 f"{classes.describe()}{hint}")

    def _write_pictures(self) -> None:
        """progress.gif, losses.png and real_vs_fake.png (the report is written above the loop, from these files)."""
        run_dir, trainer = self.run_dir, self.models.trainer
        try:
            frames = sorted((run_dir / "samples").glob("e*-s*.png"))
            if frames:
                viz.save_progress_gif(frames, run_dir / "progress.gif")
                trainer.finish_pictures(run_dir, frames)
            if (run_dir / "metrics.jsonl").is_file():
                for plot, name in ((viz.plot_losses, "losses.png"), (viz.plot_stats, "stats.png")):
                    try:
                        plot(run_dir / "metrics.jsonl", run_dir / name, trainer.loss_panels)
                    except ValueError:
                        pass  # nothing of that kind logged
            self._real_vs_fake()
        except Exception as exc:  # pictures must never cost the user a finished run
            self.log(f"warning: could not draw the run's pictures: {exc}")

    def _real_vs_fake(self) -> None:
        sampler, trainer, fixed = self._sampler(), self.models.trainer, self.models.fixed
        sampler.eval()
        n = min(64, len(self.dataset))
        with torch.inference_mode():
            if self.output == "points":
                many = sampler(*trainer.generator_inputs(2000, torch.Generator().manual_seed(0))).float().cpu()
                viz.save_points_plot(self.dataset.tensor[:2000], many, self.run_dir / "real_vs_fake.png")
                return
            first = type(fixed)({k: v[:n] for k, v in fixed.tensors.items()}, fixed.nrow, fixed.labels_key)
            fake = trainer.draw(sampler, first)
        shown = min(len(fake), n)  # as many real images as fakes (a preset may fix only 16 latents)
        real = self._real_images(range(shown))
        viz.save_real_vs_fake(real, fake, self.run_dir / "real_vs_fake.png")


class RealSpread:
    """The conditional watch's yardstick, measured once on first use: the first images of each fixed label's
    class, as many as the fixed inputs have of it, measured as the samples are (None when the data have no
    labels)."""

    def __init__(self, dataset, space, real_images: Callable[[list[int]], torch.Tensor]):
        self.dataset, self.space, self.real_images = dataset, space, real_images
        self.measured = False
        self.value: Optional[float] = None

    def of(self, labels: torch.Tensor) -> Optional[float]:
        if not self.measured:
            self.measured = True
            data_labels = getattr(self.dataset, "labels", None)
            if data_labels is not None:
                labels, data_labels = labels.cpu(), torch.as_tensor(data_labels).cpu()
                idx = torch.cat([torch.nonzero(data_labels == k).flatten()[:int((labels == k).sum())]
                                 for k in labels.unique()])
                if idx.numel() >= 2:
                    self.value = self.space.label_spread(self.real_images(idx.tolist()), data_labels[idx])
        return self.value
