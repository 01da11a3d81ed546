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

import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ganforge.checkpoint import load_latest
from ganforge.config import RunConfig, dump_config
from ganforge.data import build_dataset, describe
from ganforge.errors import UserError
from ganforge.io_utils import atomic_write_bytes, atomic_write_text
from ganforge.families import batch_multiple, get_family
from ganforge.families.outputs import output_of
from ganforge.train import compiling, determinism, fingerprint as fp, graphs, state
from ganforge.train.batches import BatchSource
from ganforge.train.checks import check_data_kind, check_labels, check_options
from ganforge.train.build import (AMP_DTYPES, SKIPPED, accumulation, build_models, probe_step,  # noqa: F401
                                  seed_everything)
from ganforge.train.distributed import Dist, LostWorker, elastic_resume, init_from_env, watch
from ganforge.train.diversity import choose_space
from ganforge.train.engine import run_step
from ganforge.train.guards import Event, NonFiniteGuard
from ganforge.train.optim import make_optimizer, set_hyperparameters  # noqa: F401  (make_optimizer: benches)
from ganforge.train.parts import LogWindow, Position, RunFiles, RunSummary
from ganforge.train.pictures import write_pictures
from ganforge.train.rundir import Interrupted, check_new_run_dir, discard_unstarted
from ganforge.train.schedule import lr_factor, scale_base_lr
from ganforge.train.signals import StopRequest
from ganforge.train.watches import SampleWatches


FP16_DEVICES = ("cuda",)  # where train.precision=fp16 runs (GradScaler + float16 autocast)
REWOUND = "rewound"  # what a step or an epoch's end returns after a rollback: go on from the restored position


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
        check_new_run_dir(Path(run_dir))  # before anything is built or logged
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
        if fresh and dist.is_main and discard_unstarted(Path(run_dir), existed):
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
        self.output = output_of(mc)  # images, points or translations: how samples are described, saved, pictured
        self.device = dist.device
        if tc.threads:
            torch.set_num_threads(tc.threads)
        check_options(cfg, self.family, dist, log, FP16_DEVICES)  # train/checks.py: before any work
        # the data: one fixed order per epoch, this rank's slice of every global batch
        self.dataset = build_dataset(cfg.data, mc, seed=tc.seed, strict=strict_data)
        check_data_kind(cfg, self.family, self.dataset)
        check_labels(cfg, self.family, self.dataset)
        dist.local_batch(tc.batch_size, batch_multiple(mc))  # a UserError unless the batch splits evenly
        self.source = BatchSource(self.dataset, tc.batch_size, tc.seed, cfg.data.num_workers, group=tc.d_steps,
                                  rank=dist.rank, world_size=dist.world_size, device=self.device)  # on a GPU
        total_steps = tc.steps if tc.steps is not None else tc.epochs * self.source.steps_per_epoch
        # built before seeding (the evaluator's extractor draws initial weights): evaluation never shifts training
        self.evaluator = self._make_evaluator(with_evaluator)
        self.diversity_space = choose_space(cfg.data.spec, mc)  # chosen once: diversities compared in one space
        seed_everything(tc.seed)
        self.models = build_models(cfg, self.family, dist, self.dataset, total_steps, init_from)  # train/build.py
        self.keys = (*self.models.trainer.stat_keys, SKIPPED)
        # train.cuda_graph (train/graphs.py): the step's CUDA-graph replay, or None: run_step
        self.graph_step = graphs.graph_step(tc, self.device, self.models.trainer, self.models.updater, log)
        self.at = Position(end=total_steps)
        self.window = LogWindow.zeros(self.keys, self.device)
        self.watches = SampleWatches(cfg, dist, self.dataset, self.diversity_space, self._real_images, self.event)
        self.collapse = self.watches.collapse  # also watches the log lines (domination, divergence)
        self.nonfinite = NonFiniteGuard(cfg.guard.max_skips, cfg.guard.max_rollbacks)
        self.files = RunFiles(run_dir, is_main=dist.is_main, tensorboard_on=tc.tensorboard)
        self.fingerprint = fp.fingerprint(cfg, self.dataset)

    # ------------------------------------------------------------------ set-up

    def _make_evaluator(self, wanted: bool):
        """Rank 0's periodic evaluator (the other ranks await its verdict), or None."""
        cfg = self.cfg
        if not (wanted and cfg.eval.every and self.dist.is_main):
            return None
        from ganforge.train.periodic import PeriodicEvaluator

        return PeriodicEvaluator(cfg.eval, cfg.model, cfg.data.spec,
                                 lambda n, gen: self.models.trainer.generator_inputs(n, gen),
                                 self.device, cfg.data.root, log=self.log)

    def describe(self) -> None:
        mc, tc = self.cfg.model, self.cfg.train
        shape = self.output.describe(mc)
        nets = ", ".join(f"{name} {n:,}" for name, n in self.models.params.items())
        self.log(f"data: {describe(self.dataset)}")
        self.log(f"models: {nets} parameters ({mc.family}, {shape}, device {self.device})")
        if self.cfg.init_from:
            self.log(f"fine-tuning: weights from {self.cfg.init_from}, fresh optimizers at step 0")
        self.log(self.diversity_space.describe())
        watch_line = self.watches.describe()
        if watch_line:
            self.log(watch_line)
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
            check_new_run_dir(run_dir)
        compiling.compile_networks(self.models.nets, self.cfg.train.compile, self.device, self._probe_step,
                                   self.log)
        if resume:
            self._resume(force)
        else:
            self.dist.barrier()  # every rank has checked the directory is new before rank 0 writes into it
            if self.dist.is_main:
                check_new_run_dir(run_dir)
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
            state.truncate_metrics(self.run_dir / "metrics.jsonl", self.at.step)
        self.log(f"resumed {self.run_dir} from {ckpt.path.name}: step {self.at.step}, epoch {self.at.epoch}, "
                 f"batch {self.at.pos}")

    def _restore(self, ckpt) -> None:
        state.restore(self.models, self.at, ckpt, self.dist)  # train/state.py

    def _probe_step(self, nets: dict[str, nn.Module]) -> None:
        """``train.compile``'s probe: one step of copies of the networks, built as the run's (train/build.py)."""
        probe_step(self.cfg, self.family, self.models.ctx, self.dist, self.dataset, nets)

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
        decay = m.trainer.ema_decay(self.at.step)  # None: train.ema.decay
        for name, ema in m.ema.items():
            ema.update(m.nets[name], self.at.step, decay)
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
            write_pictures(self.run_dir, self.models.trainer, self._real_vs_fake, self.log)  # train/pictures.py
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
        if self.dataset.skipped:  # unreadable images, listed for the user (and counted in the log)
            text = "".join(f"{p}\n" for p in self.dataset.skipped)  # a name need not be UTF-8: its bytes as \xNN
            atomic_write_bytes(self.run_dir / "skipped_files.txt", text.encode("utf-8", "backslashreplace"))
        path = state.write_checkpoint(self.files.ckpt_root, self.models, self.at, self.window,
                                      self.cfg.model_dump(mode="json"), self.fingerprint, reason, best,
                                      self.cfg.train.keep_checkpoints)
        if path is None:
            self.log(f"warning: not saving a checkpoint at step {self.at.step}: the weights hold NaN/Inf")
        return path

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
        """Draw the fixed inputs into samples/ and check them (train/watches.py); returns the collapse findings."""
        trainer, fixed = self.models.trainer, self.models.fixed
        sampler = self._sampler()
        was_training = sampler.training
        sampler.eval()
        with torch.inference_mode():
            fake = trainer.draw(sampler, fixed)
            picture = trainer.picture(fake, fixed) if self.dist.is_main else None
        sampler.train(was_training)
        findings = self.watches.on_samples(fake, fixed, sampler, trainer, self.at.step, self.at.end)
        if self.dist.is_main:
            path = self.run_dir / "samples" / f"e{self.at.epoch:04d}-s{self.at.step:08d}.png"
            if self.output.save_samples(path, fake, picture, self.dataset, self.at.step):
                self.files.grid(picture[0], picture[1], self.at.step)
        return findings

    def _real_images(self, indices) -> torch.Tensor:
        """The real images held by these dataset items (for pictures and the conditional watch's yardstick)."""
        return self.models.trainer.real_images(torch.stack([self.dataset[int(i)][0] for i in indices]))

    # ------------------------------------------------------------------ the end

    def _log_classes(self) -> None:
        line = self.watches.end_line()
        if line:
            self.log(line)

    def _real_vs_fake(self) -> None:
        sampler = self._sampler()
        sampler.eval()
        self.output.save_real_vs_fake(self.run_dir / "real_vs_fake.png", sampler, self.models.trainer,
                                      self.models.fixed, self.dataset, self._real_images, min(64, len(self.dataset)))
