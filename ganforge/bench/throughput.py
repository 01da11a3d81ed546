"""``ganforge bench throughput``: images per second of ganforge's DCGAN step against the textbook step.

Both train the same DCGAN (built once by ``build_models``, then deep-copied, so the weights start bit-identical)
on one fixed random batch in [-1, 1] that already lies on the device: data loading is not what is timed.

* **reference** -- the plain step of the seeds' SVHN notebook / the PyTorch DCGAN tutorial, written out below
  with nothing optimised: default ``torch.optim.Adam``, contiguous (NCHW) tensors, ``opt.zero_grad()``, D's fake
  batch made *with* gradients (the backward pass runs on through G for nothing), a fresh z for the G step with
  D's weights still collecting gradients, and ``.item()`` on both losses every step.
* **ganforge** -- the trainer's own step (``engine.run_step`` over the GAN family's phases) with its optimizers
  and memory format built as ``ganforge.train.loop`` builds them, and the loop's per-step accumulation of the stats
  on the device (no host sync). Rows:
  ``fresh z`` (``reuse_fake=False``: the reference's algorithm, the headline comparison) and ``reuse fake``
  (``reuse_fake=True``: the PyTorch tutorial's algorithm, one G forward fewer), each in NCHW and channels_last,
  with the trainer's default ``train.deterministic=true`` kernels; one more ``fresh z`` row in the trainer's
  memory format with ``train.deterministic=false`` (cuDNN autotuning on GPUs) shows what exactness costs.
* **ganforge fast path** -- the same trainer step with everything a GPU asks for: bf16 autocast (on GPUs that
  have bf16; fp32 elsewhere), channels_last, fused Adam (``capturable=True``) and ``train.cuda_graph`` (the whole
  step replayed as CUDA graphs, ``ganforge.train.graphs``). Where capture is refused (any CPU) the row runs the
  step eagerly and its label says why, so the table never passes an eager figure off as a graph's.

Every configuration is warmed up, then timed ``repeats`` times, the configurations taking turns every few steps
(in rotated order) so that a busy machine slows them all alike; the median over repeats is reported. Images/s counts real images consumed
(the batch size per step).
"""
from __future__ import annotations

import copy
import datetime as _dt
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ganforge.bench.markdown import machine_info, markers, write_block
from ganforge.config import TrainConfig, model_config, validate
from ganforge.config_base import ModelBase
from ganforge.families import build_models, get_family
from ganforge.devices import pick_device
from ganforge.train import determinism, graphs
from ganforge.train.engine import Updater, run_step
from ganforge.families.contract import RunContext, trainer_class
from ganforge.train.loop import AMP_DTYPES, SKIPPED, make_optimizer

MARK_START, MARK_END = markers("throughput")
WARMUP_STEPS = 3
CHUNK_STEPS = 5  # steps timed in one go before the next configuration's turn


# ---------------------------------------------------------------------------------------------------------------
# the two steps


class ReferenceTrainer:
    """The textbook DCGAN step (SVHN notebook / PyTorch tutorial), deliberately unoptimised."""

    def __init__(self, G: nn.Module, D: nn.Module, real: torch.Tensor, z_dim: int, device: torch.device,
                 lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999)):
        self.G = G.to(device)
        self.D = D.to(device)
        self.real = real.to(device)
        self.z_dim = z_dim
        self.device = device
        self.criterion = nn.BCEWithLogitsLoss()
        self.d_optimizer = torch.optim.Adam(self.D.parameters(), lr=lr, betas=betas)
        self.g_optimizer = torch.optim.Adam(self.G.parameters(), lr=lr, betas=betas)
        self.G.train()
        self.D.train()

    def step(self) -> tuple[float, float]:
        G, D, criterion = self.G, self.D, self.criterion
        real_images = self.real
        batch_size = real_images.size(0)

        # ---- train the discriminator
        self.d_optimizer.zero_grad()
        D_real = D(real_images)
        d_real_loss = criterion(D_real, torch.ones(batch_size, device=self.device))
        z = torch.randn(batch_size, self.z_dim, device=self.device)
        fake_images = G(z)
        D_fake = D(fake_images)
        d_fake_loss = criterion(D_fake, torch.zeros(batch_size, device=self.device))
        d_loss = d_real_loss + d_fake_loss
        d_loss.backward()
        self.d_optimizer.step()

        # ---- train the generator (fresh z, flipped labels)
        self.g_optimizer.zero_grad()
        z = torch.randn(batch_size, self.z_dim, device=self.device)
        fake_images = G(z)
        D_fake = D(fake_images)
        g_loss = criterion(D_fake, torch.ones(batch_size, device=self.device))
        g_loss.backward()
        self.g_optimizer.step()
        return d_loss.item(), g_loss.item()


def trainer_memory_format(train_cfg: TrainConfig, model_cfg: ModelBase) -> torch.memory_format:
    """The memory format ``ganforge.train.loop.train`` picks (keep in step with it)."""
    convolutional = get_family(model_cfg.family).convolutional
    return torch.channels_last if (train_cfg.channels_last and convolutional) else torch.contiguous_format


@dataclass
class Parts:
    """A family's trainer and its updater, assembled as the training loop assembles them."""

    trainer: object
    updater: Updater
    keys: tuple[str, ...]
    memory_format: torch.memory_format
    device: torch.device

    @property
    def G(self) -> nn.Module:
        return self.updater.nets["G"]

    @property
    def D(self) -> nn.Module:
        return self.updater.nets["D"]


def make_parts(G: nn.Module, D: nn.Module, model_cfg: ModelBase, train_cfg: TrainConfig, device: torch.device,
               make_optimizer: Callable = make_optimizer) -> Parts:
    """The GAN family's trainer and optimizers exactly as the training loop builds them (``make_optimizer`` is for
    tests)."""
    memory_format = trainer_memory_format(train_cfg, model_cfg)
    nets = {"G": G.to(device, memory_format=memory_format), "D": D.to(device, memory_format=memory_format)}
    cfg = validate({"model": model_cfg.model_dump(), "train": train_cfg.model_dump()})
    ctx = RunContext(device, memory_format, AMP_DTYPES[train_cfg.precision], total_steps=train_cfg.steps or 1)
    trainer = trainer_class(get_family(model_cfg.family).trainer)(cfg, nets, ctx)
    specs = trainer.optimizers()
    optimizers = {name: make_optimizer([p for n in s.networks for p in nets[n].parameters()], s.lr, train_cfg, device)
                  for name, s in specs.items()}
    for net in nets.values():
        net.train()
    updater = Updater(nets, optimizers, {n: s.networks for n, s in specs.items()})
    return Parts(trainer, updater, (*trainer.stat_keys, SKIPPED), memory_format, device)


class GanforgeTrainer:
    """ganforge's step on a fixed batch, with the loop's accumulation of the stats on the device."""

    def __init__(self, parts: Parts, real: torch.Tensor, step_fn: graphs.StepFn = run_step):
        self.parts, self.step_fn = parts, step_fn  # step_fn: run_step, or its CUDA-graph replay (fast path)
        self.batches = [(real.to(parts.device), torch.zeros(real.shape[0], dtype=torch.long, device=parts.device))]
        self.acc = torch.zeros(len(parts.keys), device=parts.device)
        self.n = 0

    def step(self) -> torch.Tensor:
        values, _ = self.step_fn(self.parts.trainer, self.parts.updater, self.parts.keys, self.batches, self.n)
        self.acc += values
        self.n += 1
        return values


# ---------------------------------------------------------------------------------------------------------------
# timing


@dataclass
class Config:
    size: int
    variant: str  # "reference" | "fresh_z" | "reuse_fake" | "fast"
    channels_last: bool
    step: Callable[[], object]
    default_format: bool = False  # the memory format the trainer would use
    deterministic: Optional[bool] = None  # train.deterministic of a ganforge row; None: torch's defaults (reference)
    times: Optional[list[float]] = None
    label: Optional[str] = None  # the step column when it is not the variant's (the fast path says what it ran)
    warmup: int = WARMUP_STEPS  # the fast path warms up its graphs too: capture is not timed
    graph: Optional[graphs.GraphStep] = None  # the fast path's graphs, when capture was allowed

    def step_label(self) -> Optional[str]:
        """The label, corrected when a capture failed and the row in fact ran eagerly."""
        if self.graph is not None and self.graph.failed and self.label:
            return self.label.replace("CUDA graph", f"eager: capture failed: {self.graph.failed[:80]}")
        return self.label

    def timed(self, n: int, device: torch.device) -> float:
        """Seconds for ``n`` steps, under this row's kernel settings."""
        if self.deterministic is None:
            return time_steps(self.step, n, device)
        with determinism.kernels(self.deterministic, device):
            return time_steps(self.step, n, device)


VARIANT_LABEL = {
    "reference": "reference (textbook)",
    "fresh_z": "ganforge, fresh z (same algorithm)",
    "reuse_fake": "ganforge, reuse fake (tutorial)",
    "fast": "ganforge fast path",
}


def fast_precision(device: torch.device) -> str:
    """bf16 where the GPU has it; fp32 elsewhere (a CPU without bf16 units emulates it, slower than fp32)."""
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def fast_label(precision: str, refused: Optional[str]) -> str:
    """What the fast row ran: its precision and kernels, and the CUDA graph or the reason it stayed eager."""
    parts = f"{precision}, fused Adam, " + (f"eager: {refused}" if refused else "CUDA graph")
    return f"{VARIANT_LABEL['fast']} ({parts})"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], object], n: int, device: torch.device) -> float:
    """Seconds for ``n`` calls of ``step``, the device drained before and after."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    _sync(device)
    return time.perf_counter() - t0


def _fast_row(size: int, G0: nn.Module, D0: nn.Module, mc: ModelBase, real: torch.Tensor,
              device: torch.device) -> Config:
    """The fast path's row: bf16 (where the GPU has it), channels_last, fused capturable Adam, CUDA graph."""
    precision = fast_precision(device)
    tc = TrainConfig(batch_size=real.shape[0], channels_last=True, steps=1, precision=precision, cuda_graph=True)
    parts = make_parts(copy.deepcopy(G0), copy.deepcopy(D0), mc, tc, device)
    refused = graphs.refusal(tc, device, parts.trainer, parts.updater)
    graph = None if refused else graphs.GraphStep(log=lambda s: None)
    return Config(size, "fast", True, GanforgeTrainer(parts, real, graph or run_step).step,
                  deterministic=True, label=fast_label(precision, refused),
                  warmup=WARMUP_STEPS + graphs.WARMUP_STEPS + 1, graph=graph)


def _configs_for_size(size: int, device: torch.device, batch: int, width: int, seed: int,
                      formats: Sequence[bool], fast: bool = True) -> list[Config]:
    mc = model_config(family="dcgan", image_size=size, channels=3, g_width=width, d_width=width)
    torch.manual_seed(seed)
    G0, D0 = build_models(mc)
    real = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed + 1)) * 2 - 1
    real = real.to(device)
    default_cl = trainer_memory_format(TrainConfig(), mc) == torch.channels_last
    ref = ReferenceTrainer(copy.deepcopy(G0), copy.deepcopy(D0), real, mc.z_dim, device)
    configs = [Config(size, "reference", False, ref.step)]

    def ganforge_row(variant: str, cl: bool, deterministic: bool) -> Config:
        tc = TrainConfig(batch_size=batch, reuse_fake=variant == "reuse_fake", channels_last=cl, steps=1)
        parts = make_parts(copy.deepcopy(G0), copy.deepcopy(D0), mc, tc, device)
        return Config(size, variant, cl, GanforgeTrainer(parts, real).step, default_format=cl == default_cl,
                      deterministic=deterministic)

    for variant in ("fresh_z", "reuse_fake"):
        configs += [ganforge_row(variant, cl, deterministic=True) for cl in formats]
    if default_cl in formats:
        configs.append(ganforge_row("fresh_z", default_cl, deterministic=False))
    if fast:
        configs.append(_fast_row(size, G0, D0, mc, real, device))
    return configs


def run(sizes: Sequence[int], steps: int, device: torch.device, repeats: int = 3, batch: int = 64, width: int = 64,
        seed: int = 0, formats: Sequence[bool] = (False, True), chunk: int = CHUNK_STEPS,
        log: Callable[[str], None] = lambda s: print(s, file=sys.stderr), *, batches: Optional[Sequence[int]] = None,
        fast: bool = True) -> list[dict[str, object]]:
    """Time every configuration; one dict per (size, batch, variant, memory format), reference first per size.

    ``batches`` (default: ``batch`` alone) are timed one after the other, each against its own reference.
    """
    rows: list[dict[str, object]] = []
    for size in sizes:
        for b in batches or (batch,):
            rows += _run_one(size, steps, device, repeats, b, width, seed, formats, chunk, log, fast)
    return rows


def _run_one(size: int, steps: int, device: torch.device, repeats: int, batch: int, width: int, seed: int,
             formats: Sequence[bool], chunk: int, log: Callable[[str], None], fast: bool) -> list[dict[str, object]]:
    """One size and batch. Each repeat times ``steps`` steps of every configuration, taken ``chunk`` steps at a
    time in turn, so that a burst of other work on the machine lands on all of them alike."""
    rows: list[dict[str, object]] = []
    configs = _configs_for_size(size, device, batch, width, seed, formats, fast)
    for c in configs:
        c.times = []
        c.timed(c.warmup, device)
    chunks = [min(chunk, steps - i) for i in range(0, steps, chunk)]
    for r in range(repeats):
        for c in configs:
            c.times.append(0.0)
        for j, n in enumerate(chunks):
            k = (r + j) % len(configs)
            for c in configs[k:] + configs[:k]:  # interleaved in chunks, the order rotated
                c.times[-1] += c.timed(n, device)
        log(f"bench: {size}x{size} batch {batch} round {r + 1}/{repeats}: " + ", ".join(
            f"{c.variant}{'/cl' if c.channels_last else ''}{'/nondet' if c.deterministic is False else ''} "
            f"{steps * batch / c.times[-1]:.1f}" for c in configs))
    ref_ips = steps * batch / statistics.median(configs[0].times)
    for c in configs:
        ips = [steps * batch / t for t in c.times]
        med = statistics.median(ips)
        rows.append({
            "size": size, "batch": batch, "width": width, "variant": c.variant, "channels_last": c.channels_last,
            "default_format": c.default_format or c.variant == "reference", "img_s": med,
            "deterministic": c.deterministic, **({"label": c.step_label()} if c.label else {}),
            "img_s_all": ips, "speedup": med / ref_ips, "steps": steps, "repeats": repeats,
        })
    return rows


# ---------------------------------------------------------------------------------------------------------------
# report


def render_table(rows: Sequence[dict[str, object]]) -> str:
    lines = [
        "| config | step | memory format | kernels | img/s (median) | min-max | vs reference |",
        "|---|---|---|---|---:|---|---:|",
    ]
    kernels = {None: "torch defaults", True: "deterministic", False: "autotuned (deterministic=false)"}
    for r in rows:
        fmt = "channels_last" if r["channels_last"] else "contiguous"
        if r["variant"] != "reference" and r["default_format"]:
            fmt += " (trainer default)"
        config = f"DCGAN {r['size']}x{r['size']}, ngf=ndf={r['width']}, batch {r['batch']}"
        lo, hi = min(r["img_s_all"]), max(r["img_s_all"])
        speed = f"{r['speedup']:.2f}x"
        if _is_headline(r):
            speed = f"**{speed}**"
        step = r.get("label") or VARIANT_LABEL[r["variant"]]
        lines.append(f"| {config} | {step} | {fmt} | {kernels[r.get('deterministic')]} | "
                     f"{r['img_s']:.1f} | {lo:.1f}-{hi:.1f} | {speed} |")
    return "\n".join(lines)


def _is_headline(row: dict[str, object]) -> bool:
    """ganforge's row in the trainer's defaults: same algorithm, its memory format, deterministic kernels."""
    return row["variant"] == "fresh_z" and bool(row["default_format"]) and row.get("deterministic") is not False


def headline(rows: Sequence[dict[str, object]]) -> list[str]:
    out = []
    batches = dict.fromkeys(r["batch"] for r in rows)
    for size, batch in ((s, b) for s in dict.fromkeys(r["size"] for r in rows) for b in batches):
        mine = [r for r in rows if r["size"] == size and r["batch"] == batch]
        ref = next((r for r in mine if r["variant"] == "reference"), None)
        a = next((r for r in mine if _is_headline(r)), None)
        b = next((r for r in mine if r["variant"] == "reuse_fake" and r["default_format"]), None)
        fast = next((r for r in mine if r.get("deterministic") is False), None)
        path = next((r for r in mine if r["variant"] == "fast"), None)
        if ref and a:
            where = f"{size}x{size}" + (f" batch {batch}" if len(batches) > 1 else "")
            text = (f"{where}: ganforge {a['img_s']:.1f} img/s vs reference {ref['img_s']:.1f} img/s: "
                    f"**{a['speedup']:.2f}x** (same algorithm)")
            if b:
                text += f"; {b['speedup']:.2f}x reusing the fake batch"
            if fast:
                text += (f"; {fast['speedup']:.2f}x with train.deterministic=false (exactness costs "
                         f"{1 - a['img_s'] / fast['img_s']:+.1%})")
            if path:
                text += f"; fast path {path['speedup']:.2f}x ({path['label'][len(VARIANT_LABEL['fast']) + 2:-1]})"
            out.append(text)
    return out


def command_line(steps: int, device: str, sizes: Sequence[int], repeats: int, batch: int, width: int,
                 threads: Optional[int] = None, batches: Optional[Sequence[int]] = None) -> str:
    """The command that reproduces a table: the CLI when it can, else the Python call."""
    batches = list(batches or (batch,))
    if (repeats, width, threads) == (3, 64, None):
        cli = f"ganforge bench throughput --steps {steps} --device {device} --sizes {','.join(map(str, sizes))}"
        return cli + (f" --batches {','.join(map(str, batches))}" if batches != [64] else "")
    more = f", batches={batches}" if len(batches) > 1 else ""
    return (f"python -c \"from ganforge.bench.throughput import main; main(steps={steps}, device={device!r}, "
            f"sizes={list(sizes)}, write=None, repeats={repeats}, batch={batches[0]}, width={width}, "
            f"threads={threads}{more})\"")


def block_name(device: torch.device) -> str:
    """The marked block a table goes to: GPU figures get their own, so a GPU run never replaces the CPU table."""
    return "throughput-gpu" if device.type == "cuda" else "throughput"


def render_block(rows: Sequence[dict[str, object]], info: dict[str, object], command: str, date: str,
                 name: str = "throughput") -> str:
    machine = (f"{info['cpu']}, {info['logical_cores']} logical cores, torch {info['torch']} "
               f"({info['torch_threads']} threads), device {info['device']}")
    if "device_name" in info:
        machine += f" ({info['device_name']}, CUDA {info.get('cuda')})"
    load = info.get("load_avg")
    if load is not None:
        machine += f"; load average {load} at start"
        if info["device"] == "cpu" and load > 0.5:
            machine += " (**other processes were busy: CPU timings are contended**)"
    r0 = rows[0] if rows else {"steps": 0, "repeats": 0}
    start, end = markers(name)
    parts = [
        start,
        f"`{command}`  ",
        f"{date}; {machine}  ",
        f"{WARMUP_STEPS} warm-up steps, then {r0['repeats']} repeats of {r0['steps']} timed steps, the "
        f"configurations taking turns every {CHUNK_STEPS} steps; median over repeats; "
        "images/s = real images consumed per second.",
        "",
        render_table(rows),
        "",
        *[f"- {h}" for h in headline(rows)],
        end,
    ]
    return "\n".join(parts)


def main(steps: int = 30, device: str = "auto", sizes: Sequence[int] = (64, 32), write: Optional[Path] = None,
         repeats: int = 3, *, batch: int = 64, width: int = 64, formats: Sequence[bool] = (False, True),
         threads: Optional[int] = None, batches: Optional[Sequence[int]] = None, fast: bool = True,
         log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> list[dict[str, object]]:
    """Run the benchmark, print the markdown table, optionally write it into ``write``; return the rows.

    ``threads`` sets torch's intra-op threads (as ``train.threads`` does); None keeps torch's default.
    ``batches`` times several batch sizes (default: ``batch``); ``fast`` adds the fast path's row.
    """
    if threads:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    info = machine_info(dev)
    rows = run(sizes, steps, dev, repeats=repeats, batch=batch, width=width, formats=formats, log=log,
               batches=batches, fast=fast)
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = command_line(steps, device, sizes, repeats, batch, width, threads, batches)
    block = render_block(rows, info, command, date, block_name(dev))
    print(block)
    if write is not None:
        write_block(Path(write), block_name(dev), block)
    for r in rows:
        r["machine"] = info
    return rows


def main_e2e(folder: Optional[Path] = None, steps: int = 78, repeats: int = 2, write: Optional[Path] = None,
             out_root: Path = Path("runs/bench-e2e"), bf16: bool = True) -> dict:
    """Whole runs, start-up included: ganforge vs the reference script (``end_to_end``); prints the block."""
    from ganforge.bench import end_to_end

    info = machine_info(torch.device("cpu"))
    res = end_to_end.run(folder, steps=steps, repeats=repeats, out_root=out_root, bf16=bf16)
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = end_to_end.render(res, info, date)
    print(block)
    if write is not None:
        write_block(Path(write), "throughput-e2e", block)
    return res
