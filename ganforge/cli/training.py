"""``ganforge presets`` and ``ganforge train``."""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from ganforge.cli.app import app
from ganforge.cli.errors import fail
from ganforge.defaults import DEFAULT_PRESET


@app.command()
def presets(show: Optional[str] = typer.Option(None, "--show", help="Print the full YAML of one preset, and the "
                                               "train keys its family reads.")) -> None:
    """List the shipped presets (one per system of the seed documents)."""
    from ganforge.config import load_config, preset_dict, preset_names, show_config

    if show:
        typer.echo(show_config(load_config(show)), nl=False)
        return
    names = preset_names()
    width = max(len(n) for n in names)
    for name in names:
        typer.echo(f"{name:<{width}}  {preset_dict(name).get('description', '')}")


@app.command()
def train(
    preset: Optional[str] = typer.Argument(None, help="Preset name (see 'ganforge presets') or a YAML config path "
                                           f"(default: {DEFAULT_PRESET})."),
    data: Optional[str] = typer.Option(None, "--data", help="mnist-embedded | mnist | fashion-mnist | cifar10 | svhn | celeba | folder:PATH | ring8 | grid25 | paired:PATH | unpaired:PATH | digits-sr | ..."),
    direction: Optional[str] = typer.Option(None, "--direction", help="Translation data: AtoB (default) or BtoA."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Where torchvision datasets live (default: data)."),
    download: bool = typer.Option(False, "--download", help="Let torchvision download a missing dataset."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: runs/<preset>-<time>)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Number of G updates (overrides epochs)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
    seed: Optional[int] = typer.Option(None, "--seed"),
    set_: List[str] = typer.Option([], "--set", help="Override any config key: --set train.lr_g=1e-4 (repeatable)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Fine-tune: start from this finished run's "
                                             "weights (G, D, EMA), with fresh optimizers at step 0."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate config and data, build the models, print sizes, exit."),
    strict: bool = typer.Option(False, "--strict", help="Fail on an unreadable image instead of skipping it."),
    force: bool = typer.Option(False, "--force", help="With --resume: continue even if the config or data changed."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N"),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log scalars and sample grids for TensorBoard "
                                     "(tensorboard --logdir runs); needs pip install 'ganforge[tensorboard]'."),
    detect_anomaly: bool = typer.Option(False, "--detect-anomaly", help="Autograd anomaly detection (slow): names the op that made a NaN."),
) -> None:
    """Train a GAN. With no arguments: the default preset, dcgan-mnist-rpgan, on the embedded MNIST digits (no
    download)."""
    from ganforge.config import apply_overrides, load_config, load_run_config, validate
    from ganforge.apps.training import train as run_training

    flags = {
        "data.spec": data, "data.root": data_root, "data.download": True if download else None,
        "data.direction": direction,
        "train.epochs": epochs, "train.steps": steps, "train.batch_size": batch_size, "train.seed": seed,
        "train.device": device, "train.tensorboard": True if tensorboard else None,
    }
    values = {k: v for k, v in flags.items() if v is not None}
    if steps is not None and epochs is None:
        values["train.epochs"] = None  # --steps alone sets the budget
    if epochs is not None and steps is None:
        values["train.steps"] = None

    if resume is not None:
        if init_from is not None:
            fail(f"--init-from {init_from} with --resume {resume}: a resumed run continues from its own "
                  "checkpoint; fine-tune into a new --out instead")
        _check_resume_flags(resume, preset, out)
        base = load_run_config(resume)
        cfg = validate(apply_overrides(base.model_dump(mode="json"), list(set_), values), source=f"{resume}/config.yaml")
        run_dir = resume
    else:
        if init_from is not None:
            values["init_from"] = str(init_from)  # recorded in config.yaml, for the report and 'ganforge runs'
        cfg = load_config(preset or DEFAULT_PRESET, list(set_), values)
        run_dir = out or Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        summary = run_training(cfg, None if dry_run else run_dir, resume=resume is not None, dry_run=dry_run,
                               strict_data=strict, progress=not quiet, force=force, detect_anomaly=detect_anomaly,
                               init_from=Path(cfg.init_from) if cfg.init_from and resume is None else None)
    except KeyboardInterrupt as exc:  # typer would turn it into a silent exit 130
        typer.echo(str(exc) or "interrupted", err=True)
        raise typer.Exit(130) from None
    if dry_run:
        nets = " / ".join(f"{name} {n:,}" for name, n in summary.params.items())
        typer.echo(f"dry run ok: {cfg.name}: {nets} parameters")
        return
    if getattr(summary, "rank", 0) == 0:
        typer.echo(str(summary.run_dir))
    if summary.stopped:
        import signal

        code = {"SIGTERM": 128 + signal.SIGTERM, "SIGINT": 128 + signal.SIGINT}.get(summary.stopped, 1)
        raise typer.Exit(code)


def _check_resume_flags(resume: Path, preset: Optional[str], out: Optional[Path]) -> None:
    """A resumed run continues in its own folder with its own config: flags that say otherwise are refused."""
    if out is not None and Path(out).resolve() != Path(resume).resolve():
        fail(f"--out {out} with --resume {resume}: a resumed run continues in its own folder; to branch it, "
              f"copy {resume} to {out} and resume the copy")
    if preset is not None:
        fail(f"{preset!r} with --resume {resume}: a resumed run keeps its config; drop the preset and change keys "
              "with --set (add --force when they change the run)")
