"""The training loop: one plain function, every knob in the RunConfig.

``train(cfg, run_dir)`` builds data and models (failing before anything is written when the input is bad),
then alternates D and G updates, logging to ``metrics.jsonl``, drawing the fixed latent vectors into
``samples/`` every epoch, and checkpointing atomically. ``resume=True`` continues a run exactly where its
newest good checkpoint stopped: weights, optimizers, EMA, RNG states and the position inside the epoch.

Under ``accelerate launch`` or ``torchrun`` every process runs ``train``: each trains a replica on its slice of the
global batch with gradients averaged before every update (see ``distributed.py``); only rank 0 logs and writes
files, and every decision that ends or rewinds the run is taken the same on all ranks.
"""
from __future__ import annotations

import json
import math
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
from ganforge.checkpoint import capture_rng, flatten_modules, flatten_optimizer, load_latest, restore_rng, save_checkpoint
from ganforge.config import RunConfig, dump_config
from ganforge.data import build_dataset, describe
from ganforge.errors import UserError
from ganforge.io_utils import atomic_write_text
from ganforge.models import build_models, count_parameters, get_family, sample_z
from ganforge.train import determinism, fingerprint as fp
from ganforge.train.batches import BatchSource
from ganforge.train.distributed import Dist, init_from_env
from ganforge.train.ema import EMA
from ganforge.train.diversity import choose_space
from ganforge.train.guards import CollapseWatch, Event, NonFiniteGuard, tensors_finite
from ganforge.train.schedule import apply_lr, lr_factor, remember_base_lr, scale_base_lr
from ganforge.train.signals import StopRequest
from ganforge.train.steps import STAT_KEYS, GanParts, gan_step


@dataclass
class RunSummary:
    run_dir: Optional[Path]
    steps: int
    epochs: int
    seconds: float
    params_g: int
    params_d: int
    last: dict[str, float]
    stopped: Optional[str] = None  # why the run ended before its budget: a signal name, or "interrupted"
    models: Optional[dict[str, nn.Module]] = field(default=None, repr=False)  # the trained G, D (and G_ema)
    rank: int = 0  # this process's rank in a data-parallel run: only rank 0 wrote run_dir


AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
FP16_DEVICES = ("cuda",)  # where train.precision=fp16 runs (GradScaler + float16 autocast)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fixed_latents(cfg: RunConfig, conditional: bool) -> tuple[torch.Tensor, Optional[torch.Tensor], int]:
    """The latent vectors drawn every epoch (and their labels), and the grid's row length.

    Conditional runs follow the seeds' cDCGAN: row k shows class k, the same z in every row.
    """
    gen = torch.Generator().manual_seed(cfg.train.seed + 12345)
    n = cfg.train.n_fixed
    if conditional:
        k = cfg.model.num_classes
        per_class = max(1, n // k)
        z = sample_z(per_class, cfg.model, generator=gen).repeat(k, 1)
        y = torch.arange(k).repeat_interleave(per_class)
        return z, y, per_class
    z = sample_z(n, cfg.model, generator=gen)
    return z, None, max(1, math.ceil(math.sqrt(n)))


def _make_optimizer(params, lr: float, tc, device: torch.device) -> torch.optim.Optimizer:
    # fused Adam: one kernel for all parameters on CUDA and CPU alike
    opt = torch.optim.Adam(params, lr=lr, betas=(tc.beta1, tc.beta2), fused=device.type in ("cuda", "cpu"))
    remember_base_lr(opt)  # the schedule (train.lr_decay) and the rollbacks work from this base rate
    return opt


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


def _restore(ckpt, parts: GanParts) -> tuple[int, int, int]:
    """Load a checkpoint's models, optimizers, loss scales and RNG states; returns (step, epoch, position)."""
    G, D, ema, opt_g, opt_d = parts.G, parts.D, parts.ema, parts.opt_g, parts.opt_d
    G.load_state_dict(ckpt.module_state("G"))
    D.load_state_dict(ckpt.module_state("D"))
    if ema is not None:
        ema.model.load_state_dict(ckpt.module_state("G_ema") or ckpt.module_state("G"))
    opt_g.load_state_dict(ckpt.optimizer_state("opt_g"))
    opt_d.load_state_dict(ckpt.optimizer_state("opt_d"))
    _match_param_layout(opt_g)
    _match_param_layout(opt_d)
    restore_rng(ckpt.optim, ckpt.state["rng"])
    parts.dist.sync_rng()  # a CUDA generator is per device: every rank continues rank 0's stream
    scalers = ckpt.state.get("scalers") or {}
    for key, scaler in (("g", parts.scaler_g), ("d", parts.scaler_d)):
        if scaler is not None and key in scalers:
            scaler.load_state_dict(scalers[key])
    return ckpt.state["step"], ckpt.state["epoch"], ckpt.state["position"]


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
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UserError(f"output directory {run_dir} already exists and is not empty: "
                        f"continue it with --resume {run_dir}, or choose another --out")


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
) -> RunSummary:
    if cfg.train.deterministic and cfg.train.device != "cpu" and torch.cuda.is_available():
        determinism.check_cublas_workspace(log)  # before this process's CUDA work starts
    dist = init_from_env(cfg.train.device)  # one process of a data-parallel run, or the only one
    try:
        with determinism.kernels(cfg.train.deterministic, dist.device):
            return _train(cfg, run_dir, dist, resume=resume, dry_run=dry_run, strict_data=strict_data,
                          progress=progress and dist.is_main, log=log if dist.is_main else _silent,
                          stop_after_steps=stop_after_steps, force=force, detect_anomaly=detect_anomaly)
    finally:
        dist.shutdown()


def _silent(_: str) -> None:
    pass


def _train(cfg: RunConfig, run_dir: Optional[Path], dist: Dist, *, resume: bool, dry_run: bool, strict_data: bool,
           progress: bool, log: Callable[[str], None], stop_after_steps: Optional[int], force: bool,
           detect_anomaly: bool) -> RunSummary:
    tc, mc, gc = cfg.train, cfg.model, cfg.guard
    family = get_family(mc.family)
    torch.autograd.set_detect_anomaly(detect_anomaly)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = dist.device
    if tc.precision == "fp16" and device.type not in FP16_DEVICES:
        raise UserError(f"train.precision=fp16 needs a CUDA device (this run is on {device}): use bf16")
    if tc.sync_batchnorm and dist.enabled and device.type != "cuda":
        raise UserError("train.sync_batchnorm needs CUDA (torch's SyncBatchNorm has no CPU implementation): "
                        "leave it off, or drop BatchNorm with --set model.batch_norm=false")
    launcher_precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launcher_precision in ("bf16", "fp16") and launcher_precision != tc.precision:
        log(f"warning: accelerate's mixed precision ({launcher_precision}) is not applied; ganforge uses "
            f"train.precision={tc.precision}: pass --set train.precision={launcher_precision}")
    if run_dir is not None and not resume and not dry_run:
        _check_new_run_dir(Path(run_dir))

    # --- validate everything up front: data, models; nothing is written before this passes
    dataset = build_dataset(cfg.data, mc, strict=strict_data)
    if family.conditional and getattr(dataset, "num_classes", None) is None:
        raise UserError(f"family {mc.family!r} needs class labels but {cfg.data.spec!r} has none: "
                        "use a labelled set (mnist-embedded, mnist, cifar10, ...)")
    if family.conditional and dataset.num_classes > mc.num_classes:
        raise UserError(f"{cfg.data.spec!r} has {dataset.num_classes} classes but model.num_classes="
                        f"{mc.num_classes}: --set model.num_classes={dataset.num_classes}")
    local_batch = dist.local_batch(tc.batch_size, mc.pack)
    source = BatchSource(dataset, tc.batch_size, tc.seed, cfg.data.num_workers, group=tc.d_steps,
                         rank=dist.rank, world_size=dist.world_size)
    evaluator = None
    if cfg.eval.every and not dry_run and dist.is_main:  # rank 0 evaluates; the others wait for its verdict
        from ganforge.metrics.periodic import PeriodicEvaluator

        evaluator = PeriodicEvaluator(cfg.eval, mc, cfg.data.spec, family.conditional, device, cfg.data.root, log=log)
    diversity_space = choose_space(cfg.data.spec, mc)  # chosen once: diversities are compared within one space
    seed_everything(tc.seed)
    G, D = build_models(mc)
    pg, pd = count_parameters(G), count_parameters(D)
    total_steps = tc.steps if tc.steps is not None else tc.epochs * source.steps_per_epoch
    log(f"data: {describe(dataset)}")
    shape = f"{mc.point_dim}-D points" if mc.point_dim is not None else f"{mc.image_size}px"
    log(f"models: G {pg:,} parameters, D {pd:,} parameters ({mc.family}, {shape}, device {device})")
    log(diversity_space.describe())
    log(f"budget: {total_steps:,} steps of batch {tc.batch_size} ({source.steps_per_epoch} steps per epoch)")
    if dist.enabled:
        log(f"data-parallel: {dist.world_size} processes, {local_batch} samples each per batch, "
            f"precision {tc.precision}")
    if dry_run:
        return RunSummary(None, 0, 0, 0.0, pg, pd, {})
    assert run_dir is not None
    run_dir = Path(run_dir)

    memory_format = torch.channels_last if (tc.channels_last and family.convolutional) else torch.contiguous_format
    G.to(device, memory_format=memory_format)
    D.to(device, memory_format=memory_format)
    dist.broadcast_module(G)  # identical replicas from the first step
    dist.broadcast_module(D)
    opt_g = _make_optimizer(G.parameters(), tc.lr_g, tc, device)
    opt_d = _make_optimizer(D.parameters(), tc.lr_d, tc, device)
    ema = EMA(G, tc.ema.decay, tc.ema.start_step) if tc.ema.enabled else None
    if tc.sync_batchnorm and dist.enabled:  # after the EMA copy: its BatchNorm re-estimation stays local
        G = nn.SyncBatchNorm.convert_sync_batchnorm(G)  # same parameter objects: the optimizers still hold them
        D = nn.SyncBatchNorm.convert_sync_batchnorm(D)
    fixed_z, fixed_y, grid_row = fixed_latents(cfg, family.conditional)
    scaler = (lambda: torch.amp.GradScaler(device.type)) if tc.precision == "fp16" else (lambda: None)
    parts = GanParts(G, D, opt_g, opt_d, mc, tc, family.conditional, device, memory_format, ema, dist=dist,
                     amp_dtype=AMP_DTYPES[tc.precision], scaler_g=scaler(), scaler_d=scaler())
    models = {"G": G, "D": D, **({"G_ema": ema.model} if ema is not None else {})}

    step, epoch, pos = 0, 0, 0
    best_value: Optional[float] = None  # of cfg.eval.best, for checkpoints/best
    ckpt_root = run_dir / "checkpoints"
    if resume:
        ckpt = load_latest(ckpt_root, map_location=device, warn=log)
        diffs = fp.mismatch(ckpt.state.get("fingerprint", {}), fp.fingerprint(cfg, dataset))
        if diffs and not force:
            raise UserError(f"{run_dir} was trained with something else: {'; '.join(diffs[:5])}"
                            f"{' ...' if len(diffs) > 5 else ''} (pass --force to resume anyway)")
        if diffs:
            log(f"warning: resuming despite changes (--force): {'; '.join(diffs)}")
        step, epoch, pos = _restore(ckpt, parts)
        best_value = ckpt.state.get("best_value")
        dist.barrier()  # every rank has read the checkpoint before rank 0 writes anything
        if dist.is_main:
            _truncate_metrics(run_dir / "metrics.jsonl", step)
        log(f"resumed {run_dir} from {ckpt.path.name}: step {step}, epoch {epoch}, batch {pos}")
    else:
        dist.barrier()  # every rank has checked the directory is new before rank 0 writes into it
        if dist.is_main:
            _check_new_run_dir(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    if dist.is_main:
        (run_dir / "samples").mkdir(exist_ok=True)
    dist.barrier()
    run_fingerprint = fp.fingerprint(cfg, dataset)

    def refresh_ema() -> None:
        if ema is not None:
            ema.refresh_batchnorm(mc, family.conditional, device, step)

    def save(reason: str, best: bool = False) -> Optional[Path]:
        """Every rank calls this (it holds collectives); rank 0 writes the checkpoint while the others wait."""
        refresh_ema()
        if dist.enabled:  # the log window as the next metrics line will average it, saved and kept alike
            acc.copy_(dist.all_reduce_mean(acc))
        path = write_checkpoint(reason, best) if dist.is_main else None
        dist.barrier()
        return path

    def write_checkpoint(reason: str, best: bool) -> Optional[Path]:
        rng_tensors, rng_meta = capture_rng()
        modules = {"G": G.state_dict(), "D": D.state_dict()}
        if ema is not None:
            modules["G_ema"] = ema.model.state_dict()
        weights = flatten_modules(modules)
        if not tensors_finite(weights.values()):
            log(f"warning: not saving a checkpoint at step {step}: the weights hold NaN/Inf")
            return None
        weights["fixed.z"] = fixed_z.contiguous()
        if fixed_y is not None:
            weights["fixed.y"] = fixed_y.contiguous()
        optim: dict[str, torch.Tensor] = dict(rng_tensors)
        meta: dict[str, Any] = {}
        for name, opt in (("opt_g", opt_g), ("opt_d", opt_d)):
            tensors, meta[name] = flatten_optimizer(name, opt.state_dict())
            optim.update(tensors)
        state = {"position": pos, "config": cfg.model_dump(mode="json"), "optimizers": meta, "rng": rng_meta,
                 "log_window": {"sum": acc.tolist(), "n": acc_n}, "best_value": best_value, "reason": reason,
                 "fingerprint": run_fingerprint, "time": time.time()}
        if parts.scaler_g is not None:  # fp16 loss scales: plain numbers
            state["scalers"] = {"g": parts.scaler_g.state_dict(), "d": parts.scaler_d.state_dict()}
        if dataset.skipped:  # unreadable images, listed for the user (and counted in the log)
            atomic_write_text(run_dir / "skipped_files.txt", "".join(f"{p}\n" for p in dataset.skipped))
        return save_checkpoint(ckpt_root, epoch=epoch, step=step, weights=weights, optim=optim, state=state,
                               keep=tc.keep_checkpoints, best=best)

    def run_eval() -> None:
        """Rank 0 evaluates; every rank takes part in saving checkpoints/best when the metric improved."""
        nonlocal best_value
        refresh_ema()
        improved = False
        if evaluator is not None:
            values = evaluator(ema.model if ema is not None else G, step)
            metrics_file.write(json.dumps({"step": step, "epoch": epoch, "eval": values}) + "\n")
            log("eval @ step {}: {}".format(step, ", ".join(f"{k}={v:.4g}" for k, v in values.items())))
            key = evaluator.best_key()
            if key is not None and key in values:
                from ganforge.metrics.evaluate import metric_is_better

                if metric_is_better(key, values[key], best_value):
                    best_value = values[key]
                    improved = True
        if dist.any(improved):
            save("best", best=True)

    def draw_fixed() -> list[Event]:
        """Draw the fixed latents into samples/ and check their diversity; returns the watch's findings."""
        refresh_ema()
        sampler = ema.model if ema is not None else G
        was_training = sampler.training
        sampler.eval()
        with torch.inference_mode():
            y = fixed_y.to(device) if fixed_y is not None else None
            fake = sampler(fixed_z.to(device), y).float().cpu()
        sampler.train(was_training)
        findings = watch.on_samples(dist.broadcast_float(diversity_space.diversity(fake))) if step > 0 else []
        for e in findings:
            event(e)
        if not dist.is_main:
            return findings
        path = run_dir / "samples" / f"e{epoch:04d}-s{step:08d}.png"
        if mc.point_dim is not None:
            viz.save_points_plot(dataset.tensor[:2000], fake, path, title=f"step {step}")
        else:
            viz.save_grid(fake, path, nrow=grid_row)
        return findings

    if step == 0:
        draw_fixed()  # the untrained generator: the first frame of the progression
    metrics_file = open(run_dir / "metrics.jsonl" if dist.is_main else os.devnull, "a", buffering=1)
    acc = torch.zeros(len(STAT_KEYS))  # running sums of the stats since the last metrics line
    acc_n, window_start, window_images = 0, time.perf_counter(), 0
    if resume and "log_window" in ckpt.state:  # so a resumed run logs exactly what a straight one would
        acc = torch.tensor(ckpt.state["log_window"]["sum"], dtype=torch.float32)
        acc_n = ckpt.state["log_window"]["n"]
    if step == 0:
        save("start")  # a rollback target before the first epoch ends
    t0 = time.perf_counter()
    last: dict[str, float] = {}
    nonfinite = NonFiniteGuard(gc.max_skips, gc.max_rollbacks)
    watch = CollapseWatch(gc.d_fake_floor, gc.d_fake_windows, gc.collapse_ratio, space=diversity_space.name)

    def event(e: Event) -> None:
        metrics_file.write(json.dumps(e.record(step)) + "\n")
        log(f"warning: step {step}: {e.message}")

    rolled_back = False  # set by roll_back: the epoch iterator must restart from the restored position

    def roll_back(why: str) -> bool:
        """Back to the newest good checkpoint with lower learning rates; False when out of rollbacks."""
        nonlocal step, epoch, pos, rolled_back
        if not nonfinite.can_roll_back():
            event(Event("stop", f"{why}; already rolled back {nonfinite.rollbacks} times (guard.max_rollbacks)"))
            return False
        ckpt = load_latest(ckpt_root, map_location=device, warn=log)
        step, epoch, pos = _restore(ckpt, parts)
        nonfinite.rollbacks += 1
        nonfinite.consecutive = 0
        for opt in (opt_g, opt_d):
            scale_base_lr(opt, gc.rollback_lr_factor)
        event(Event("rollback", f"{why}: rolled back to {ckpt.path.name} (step {step}), learning rates x"
                                f"{gc.rollback_lr_factor:g} (rollback {nonfinite.rollbacks} of {gc.max_rollbacks})"))
        bar.n = step
        rolled_back = True
        return True
    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps, initial=step, disable=None if progress else True, unit="step",
               dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
    G.train()
    D.train()
    stopped: Optional[str] = None
    stop = StopRequest()
    try:
        with stop.installed():
            while step < total_steps:
                for real_batches in source.epoch(epoch, start_step=pos):
                    if tc.lr_decay != "none":
                        factor = lr_factor(step, total_steps, tc.lr_decay, tc.lr_decay_start)
                        apply_lr(opt_g, factor)
                        apply_lr(opt_d, factor)
                    stats = gan_step(parts, real_batches, step)
                    if stats[-1] > 0:  # an update was refused: non-finite loss or gradient
                        if nonfinite.skipped():  # too many in a row: the state itself went bad
                            if not roll_back(f"{nonfinite.consecutive} updates in a row had NaN/Inf losses or gradients"):
                                stopped = "diverged"
                                break
                            rolled_back = False
                            break
                    else:
                        nonfinite.ok()
                    step += 1
                    pos += 1
                    acc += stats.cpu()
                    acc_n += 1
                    window_images += sum(b[0].shape[0] for b in real_batches) * dist.world_size
                    if (tc.time_limit is not None and step < total_steps
                            and dist.any(time.perf_counter() - t0 >= tc.time_limit)):  # rank clocks differ
                        log(f"time limit of {tc.time_limit:.0f}s reached at step {step}")
                        total_steps = step  # ends the run here, logged, drawn and checkpointed like any last step
                    if step % tc.log_every == 0 or step == total_steps:
                        dt = time.perf_counter() - window_start
                        window = dist.all_reduce_mean(acc)  # over the ranks: the global batch's statistics
                        last = {k: round(v / acc_n, 5) for k, v in zip(STAT_KEYS, window.tolist())}
                        rec = {"step": step, "epoch": epoch, **last, "lr_g": opt_g.param_groups[0]["lr"],
                               "lr_d": opt_d.param_groups[0]["lr"], "img_s": round(window_images / max(dt, 1e-9), 1),
                               "time": round(time.time(), 3)}
                        metrics_file.write(json.dumps(rec) + "\n")
                        for e in watch.on_log(last):
                            event(e)
                            stopped = stopped or _collapse_action(gc.on_collapse, e, roll_back)
                        bar.set_postfix(D=f"{last['loss_d']:.3f}", G=f"{last['loss_g']:.3f}",
                                        Dx=f"{last['d_real']:.2f}", DGz=f"{last['d_fake']:.2f}", refresh=False)
                        acc.zero_()
                        acc_n, window_start, window_images = 0, time.perf_counter(), 0
                    bar.update(1)
                    if cfg.eval.every and step % cfg.eval.every == 0:
                        run_eval()
                    if step >= total_steps:
                        break
                    if stopped:
                        break
                    if rolled_back:  # restart the epoch loop from the restored position
                        rolled_back = False
                        break
                    if dist.any(stop.signum is not None) or (stop_after_steps is not None and step >= stop_after_steps):
                        stopped = stop.name or "interrupted"
                        break
                if stopped:
                    break
                if pos >= source.steps_per_epoch:  # a full epoch is done
                    epoch += 1
                    pos = 0
                    if epoch % tc.sample_every == 0:
                        for e in draw_fixed():
                            stopped = stopped or _collapse_action(gc.on_collapse, e, roll_back)
                        if stopped:
                            break
                        if rolled_back:
                            rolled_back = False
                            continue
                    if epoch % tc.checkpoint_every == 0 and step < total_steps:
                        save("epoch")
            if stopped:
                save(stopped)  # the exact current step: resume continues with the next one
            else:
                draw_fixed()
                save("final")
    finally:
        bar.close()
        metrics_file.close()
    seconds = time.perf_counter() - t0
    if stopped:
        log(f"stopped ({stopped}) at step {step} with a checkpoint; continue with: ganforge train --resume {run_dir}")
        return RunSummary(run_dir, step, epoch, seconds, pg, pd, last, stopped, models, dist.rank)
    if step > 0 and dist.is_main:
        _write_pictures(run_dir, dataset, parts, fixed_z, fixed_y, mc, log)
    if dataset.skipped:
        log(f"warning: {len(dataset.skipped)} unreadable images were skipped; see {run_dir / 'skipped_files.txt'}")
    log(f"done: {step} steps in {seconds:.0f}s; run directory {run_dir}")
    return RunSummary(run_dir, step, epoch, seconds, pg, pd, last, models=models, rank=dist.rank)


def _collapse_action(action: str, e: Event, roll_back) -> Optional[str]:
    """Apply guard.on_collapse to a finding; returns a stop reason or None."""
    if action == "stop":
        return e.kind
    if action == "rollback" and not roll_back(e.message):
        return e.kind
    return None


def _write_pictures(run_dir: Path, dataset, parts: GanParts, fixed_z, fixed_y, mc, log) -> None:
    """progress.gif, losses.png and real_vs_fake.png: what people look at first."""
    try:
        frames = sorted((run_dir / "samples").glob("e*-s*.png"))
        if frames:
            viz.save_progress_gif(frames, run_dir / "progress.gif")
        if (run_dir / "metrics.jsonl").is_file():
            try:
                viz.plot_losses(run_dir / "metrics.jsonl", run_dir / "losses.png")
            except ValueError:
                pass  # nothing logged yet
        sampler = parts.ema.model if parts.ema is not None else parts.G
        n = min(64, len(dataset))
        sampler.eval()
        with torch.inference_mode():
            y = fixed_y[:n].to(parts.device) if fixed_y is not None else None
            fake = sampler(fixed_z[:n].to(parts.device), y).float().cpu()
        parts.G.train()
        if mc.point_dim is not None:
            with torch.inference_mode():
                many = sampler(sample_z(2000, mc, parts.device)).float().cpu()
            viz.save_points_plot(dataset.tensor[:2000], many, run_dir / "real_vs_fake.png")
        else:
            idx = torch.arange(n)
            real = torch.stack([dataset[int(i)][0] for i in idx])
            viz.save_real_vs_fake(real, fake, run_dir / "real_vs_fake.png")
    except Exception as exc:  # pictures must never cost the user a finished run
        log(f"warning: could not draw the run's pictures: {exc}")
