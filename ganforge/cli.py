"""The ``ganforge`` command line. User mistakes print one line and exit 2; nothing is half-written."""
from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from ganforge.errors import UserError
from ganforge.metrics.registry import METRICS

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  help="Train, sample and compare GANs. Start with: ganforge train")
bench_app = typer.Typer(help="Benchmarks (speed and quality targets live here, not in tests).")
app.add_typer(bench_app, name="bench")


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


@app.command()
def presets(show: Optional[str] = typer.Option(None, "--show", help="Print the full YAML of one preset.")) -> None:
    """List the shipped presets (one per system of the seed documents)."""
    from ganforge.config import dump_config, load_config, preset_dict, preset_names

    if show:
        typer.echo(dump_config(load_config(show)), nl=False)
        return
    names = preset_names()
    width = max(len(n) for n in names)
    for name in names:
        typer.echo(f"{name:<{width}}  {preset_dict(name).get('description', '')}")


@app.command()
def train(
    preset: Optional[str] = typer.Argument(None, help="Preset name (see 'ganforge presets') or a YAML config path "
                                           "[default: dcgan-mnist]."),
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
    """Train a GAN. With no arguments: the dcgan-mnist preset on the embedded MNIST digits (no download)."""
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
            _fail(f"--init-from {init_from} with --resume {resume}: a resumed run continues from its own "
                  "checkpoint; fine-tune into a new --out instead")
        _check_resume_flags(resume, preset, out)
        base = load_run_config(resume)
        cfg = validate(apply_overrides(base.model_dump(mode="json"), list(set_), values), source=f"{resume}/config.yaml")
        run_dir = resume
    else:
        if init_from is not None:
            values["init_from"] = str(init_from)  # recorded in config.yaml, for the report and 'ganforge runs'
        cfg = load_config(preset or "dcgan-mnist", list(set_), values)
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
        _fail(f"--out {out} with --resume {resume}: a resumed run continues in its own folder; to branch it, "
              f"copy {resume} to {out} and resume the copy")
    if preset is not None:
        _fail(f"{preset!r} with --resume {resume}: a resumed run keeps its config; drop the preset and change keys "
              "with --set (add --force when they change the run)")


@app.command()
def sample(
    run_dir: Path = typer.Argument(..., help="A run directory made by 'ganforge train'."),
    n: int = typer.Option(64, "--n", min=1, help="How many images."),
    out: Path = typer.Option(Path("samples.png"), "--out", help="FILE.png (grid), FILE.npz (uint8 N,H,W,C as arr_0) or a folder."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Conditional models: comma-separated classes, cycled, e.g. 0,1,2."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="A specific checkpoint directory."),
    truncation: Optional[float] = typer.Option(None, "--truncation", help="Style-based generators: psi, 0 (the mean-w image) to 1 (no truncation)."),
    noise: Optional[str] = typer.Option(None, "--noise", help="Style-based generators: const (default), random (from --seed) or none."),
) -> None:
    """Draw images from a trained generator."""
    from ganforge import viz
    from ganforge.apps.sampling import load_generator
    from ganforge.families import output_kind

    lab = None if labels is None else _int_list(labels, "--labels")
    kind = _sample_kind(out)
    _check_out(out, folder=kind == "folder")
    g = load_generator(run_dir, device=device, checkpoint=checkpoint)
    if output_kind(g.config.model) == "points":
        _fail("this run generates 2D points, not images: use the Python API (load_generator(...).sample)")
    _check_sample_size(n, g.config.model, kind, out)
    images = g.sample(n, seed=seed, labels=lab, truncation=truncation, noise=noise)
    if kind == "npz":
        viz.save_npz(images, out)
    elif kind == "grid":
        nrow = None
        if g.conditional and lab is None:
            nrow = g.num_classes
        viz.save_grid(images, out, nrow=nrow)
    else:
        viz.save_image_folder(images, out)
    typer.echo(str(out))


MAX_GRID = 10_000  # images in one picture: past this a grid is no longer something to look at


def _sample_kind(out: Path) -> str:
    """grid, npz or folder, from --out's suffix; anything else is refused before the model is loaded."""
    suffix = out.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix in (".png", ".jpg", ".jpeg"):
        return "grid"
    if suffix == "":
        return "folder"
    _fail(f"--out {out}: use a .png grid, an .npz file, or a folder name without extension")
    raise AssertionError("unreachable")


def _check_sample_size(n: int, model, kind: str, out: Path) -> None:
    """--n images must fit in memory at once (float images, their uint8 copy and the latents), and on disk."""
    from ganforge.memory import require_disk, require_memory

    if kind == "grid" and n > MAX_GRID:
        _fail(f"--n {n:,} images in one {out.suffix} grid: at most {MAX_GRID:,}; write an .npz or a folder for more")
    pixels = model.channels * model.image_size ** 2
    per_image = pixels * 5 + 4 * (getattr(model, "z_dim", 0) or 0)
    fix = "ask for fewer with --n, and draw more in several commands with different --seed values"
    require_memory(n * per_image, f"--n {n:,} images of {model.channels}x{model.image_size}x{model.image_size}", fix)
    if kind == "folder":
        require_disk(n * 100, out, f"--n {n:,} PNG files", fix)  # ~100 bytes: a lower bound for a tiny PNG


def _check_out(path: Path, folder: bool = False, flag: str = "--out") -> None:
    """Before any work: an output that cannot be written is one line now, not a traceback at the end."""
    from ganforge.io_utils import check_output_dir, check_output_file

    (check_output_dir if folder else check_output_file)(path, flag)  # a UserError: one line, exit 2


def _int_list(text: str, flag: str) -> list[int]:
    """Comma-separated integers, or one line naming the flag and exit 2."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values:
        _fail(f"bad {flag} {text!r}: write comma-separated integers, e.g. {flag} 0,1,2")
    return values


@app.command()
def mix(
    run_dir: Path = typer.Argument(..., help="A run of a style-based family."),
    rows: str = typer.Option("1,2,3", "--rows", help="Seeds whose coarse styles (the first --crossover layers) are used."),
    cols: str = typer.Option("4,5,6", "--cols", help="Seeds whose remaining (fine) styles are used."),
    crossover: Optional[int] = typer.Option(None, "--crossover", min=0, help="Layer where styles switch from the row seed to the column seed (default: the generator's coarse/fine split)."),
    truncation: float = typer.Option(1.0, "--truncation", help="psi for every w."),
    noise: str = typer.Option("const", "--noise", help="const | random | none"),
    out: Path = typer.Option(Path("mix.png"), "--out", help="The grid (PNG)."),
    scale: int = typer.Option(1, "--scale", min=1, max=16, help="Nearest-neighbour upscaling of every image."),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """The style-mixing grid of the StyleGAN paper: column seeds' images with the row seeds' coarse styles."""
    from ganforge import viz
    from ganforge.apps.latents import mixing_grid
    from ganforge.apps.sampling import NOISE_MODES, load_generator

    if noise not in NOISE_MODES:
        _fail(f"--noise {noise!r}: choose one of {', '.join(NOISE_MODES)}")
    _check_out(out)
    g = load_generator(run_dir, device=device)
    images, nrow = mixing_grid(g, _int_list(rows, "--rows"), _int_list(cols, "--cols"), crossover, truncation, noise)
    viz.save_grid(_upscale(images, scale), out, nrow=nrow)
    typer.echo(str(out))


@app.command()
def interpolate(
    run_dir: Path = typer.Argument(..., help="A run of any noise-to-image family."),
    seeds: str = typer.Option("1,2,3", "--seeds", help="The walk goes through these seeds' latents, in order."),
    frames: int = typer.Option(60, "--frames", min=2, help="Frames in the whole walk."),
    space: str = typer.Option("z", "--space", help="z (slerp, every family) or w (lerp, style-based generators)."),
    out: Path = typer.Option(Path("walk.gif"), "--out", help="walk.gif, or walk.mp4 (needs 'ganforge[video]')."),
    label: Optional[int] = typer.Option(None, "--label", help="Conditional models: the class held fixed (default 0)."),
    truncation: Optional[float] = typer.Option(None, "--truncation", help="Style-based generators: psi."),
    loop: bool = typer.Option(False, "--loop", help="Return to the first seed at the end (a seamless GIF)."),
    fps: float = typer.Option(20.0, "--fps", min=1.0),
    scale: int = typer.Option(4, "--scale", min=1, max=16, help="Nearest-neighbour upscaling of the frames."),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """A latent walk through several seeds as a GIF or MP4: slerp in z, lerp in w."""
    from ganforge.apps.latents import interpolation_frames, save_walk
    from ganforge.apps.sampling import load_generator

    seed_list = _int_list(seeds, "--seeds")
    _check_out(out)
    g = load_generator(run_dir, device=device)
    _check_frames(frames, scale, g.config.model)
    images = interpolation_frames(g, seed_list, frames, space, label, truncation, loop)
    save_walk(images, out, fps=fps, scale=scale)
    typer.echo(str(out))


@app.command()
def project(
    run_dir: Path = typer.Argument(..., help="A run of a noise-to-image family."),
    input_: Path = typer.Option(..., "--input", help="An image file, or FILE.npz (arr_0 uint8 N,H,W,C; see --index)."),
    out: Path = typer.Option(..., "--out", help="Folder for projected.png, comparison.png, latent.npy, projection.gif, projection.json."),
    steps: int = typer.Option(500, "--steps", min=1),
    index: int = typer.Option(0, "--index", min=0, help="Which image of an .npz."),
    label: Optional[int] = typer.Option(None, "--label", help="Conditional models: the image's class."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Adam's learning rate (default 0.1 in w, 0.05 in z)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Find the latent (w for style-based generators, else z) whose image best reproduces a given image."""
    from ganforge.apps.project import project as run_projection, read_target, write_projection
    from ganforge.apps.sampling import load_generator

    _check_out(out, folder=True)
    g = load_generator(run_dir, device=device)
    target = read_target(input_, g.config, index)
    result = run_projection(g, target, steps=steps, lr=lr, seed=seed, label=label)
    write_projection(result, target, out)
    scores = ", ".join(f"{k} {v:.4g}" for k, v in result.scores.items())
    typer.echo(f"projected {input_} into {result.space} in {steps} steps ({scores}); written to {out}")


def _check_frames(frames: int, scale: int, model) -> None:
    """A walk's frames are held at once, upscaled: refused up front when they cannot fit."""
    from ganforge.memory import require_memory

    size = getattr(model, "image_size", 0) * scale
    require_memory(frames * getattr(model, "channels", 1) * size * size * 5, f"--frames {frames:,} at {size} px",
                   "use fewer --frames or a smaller --scale")


def _upscale(images, scale: int):
    import torch.nn.functional as F

    return images if scale == 1 else F.interpolate(images, scale_factor=scale, mode="nearest")


@app.command()
def evaluate(
    source: Path = typer.Argument(..., help="A run directory, a SAMPLES.npz (arr_0 uint8 N,H,W,C) or a folder of images."),
    ref: str = typer.Option("mnist-embedded", "--ref", help="Reference data spec (same syntax as --data)."),
    metrics: str = typer.Option("fid,kid,is,prc,coverage", "--metrics", help=f"Comma-separated: {','.join(METRICS)}."),
    n: int = typer.Option(10_000, "--n", min=2, help="Images to generate/compare (files: at most their count)."),
    extractor: str = typer.Option("auto", "--extractor", help="auto | mnist-cnn | inception-v3 (auto: mnist-cnn for digit sets)."),
    inception_weights: Optional[str] = typer.Option(None, "--inception-weights", help="Path to torch-fidelity's pt_inception-2015-12-05 weights."),
    data_root: str = typer.Option("data", "--data-root"),
    download: bool = typer.Option(False, "--download"),
    batch_size: int = typer.Option(250, "--batch-size", min=1),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device"),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write the JSON (default: eval.json beside the run)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute the reference statistics."),
) -> None:
    """Score generated images against a reference set: FID, KID, IS, precision/recall, mode coverage."""
    import json

    from ganforge.io_utils import atomic_write_text
    from ganforge.apps.evaluate import eval_json_path, evaluate as run_eval
    from ganforge.metrics.pipeline import format_table

    _check_out(out or eval_json_path(source))
    result = run_eval(source, ref, metrics.split(","), n=n, extractor=extractor, batch_size=batch_size, seed=seed,
                      device=device, data_root=data_root, download=download, inception_weights=inception_weights,
                      use_cache=not no_cache, log=lambda s: typer.echo(s, err=True))
    dest = out or eval_json_path(source)
    atomic_write_text(dest, json.dumps(result, indent=2) + "\n")
    typer.echo(format_table(result))
    typer.echo(f"wrote {dest}", err=True)


@app.command()
def classify(
    run_dir: Path = typer.Argument(..., help="A semi-supervised run (e.g. preset ssgan-mnist)."),
    input_: Path = typer.Option(..., "--input", help="FILE.npz (arr_0 uint8 N,H,W,C; optional 'labels') or a folder of images."),
    out: Optional[Path] = typer.Option(None, "--out", help="CSV of predictions (default: INPUT.predictions.csv)."),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Classify images with a semi-supervised GAN's discriminator: class and confidence per image."""
    from ganforge.apps.classify import classify as run_classify

    if out is not None:
        _check_out(out)
    res = run_classify(run_dir, input_, out, device=device)
    line = f"{res['n']:,} images classified; predictions in {res['csv']}"
    if res["skipped"]:
        line += f"; {res['skipped']} unreadable files skipped"
    if res["accuracy"] is not None:
        line += f"; accuracy {res['accuracy']:.2%} against the file's labels"
    typer.echo(line)


@app.command()
def translate(
    run_dir: Path = typer.Argument(..., help="An image-to-image run directory."),
    input_: Path = typer.Option(..., "--input", help="A folder of images, one image, or FILE.npz (arr_0 uint8 N,H,W,C)."),
    out: Path = typer.Option(..., "--out", help="A folder for PNGs, or FILE.npz (arr_0 uint8 N,H,W,C)."),
    direction: str = typer.Option("AtoB", "--direction", help="AtoB (the run's own direction) or BtoA (two-way translators)."),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Translate images with a trained image-to-image model, in the input's order, at the model's size."""
    from ganforge.apps.translate import translate as run_translate

    _check_out(out, folder=out.suffix.lower() != ".npz")
    res = run_translate(run_dir, input_, out, direction=direction, device=device)
    skipped = f" ({res['skipped']} unreadable files skipped)" if res["skipped"] else ""
    typer.echo(f"{res['n']:,} images translated {direction}{skipped}; written to {res['out']}")


@app.command("report")
def report(
    run_dirs: List[Path] = typer.Argument(..., help="One run directory, or several to compare."),
    out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write (self-contained)."),
) -> None:
    """One self-contained HTML page: config (the keys that differ, for several runs), curves with guard events,
    periodic metrics, sample grids over training under a slider, real vs fake, the metric table."""
    from ganforge.apps.report import write_report

    _check_out(out)
    typer.echo(str(write_report(run_dirs, out)))


@app.command("demo")
def demo_command(
    run_dir: Path = typer.Argument(..., help="A run directory made by 'ganforge train' (any family)."),
    port: int = typer.Option(7860, "--port", min=0, max=65535, help="TCP port (0 picks a free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; keep 127.0.0.1 unless others must reach it."),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """A local web page to try a trained model: samples by seed, truncation and style mixing (style-based runs),
    a class picker (conditional runs), a latent walk, translation or classification of an uploaded image.
    Nothing is fetched from outside this machine; Ctrl-C stops it."""
    from ganforge.apps.demo import serve

    serve(run_dir, host=host, port=port, device=device, log=lambda s: typer.echo(s, err=True))


@app.command("runs")
def runs_table(
    directory: Path = typer.Argument(Path("runs"), help="Folder holding run directories (searched 3 levels deep)."),
    sort: str = typer.Option("updated", "--sort", help="A metric (fid, kid, is, precision, recall, "
                             "classes_covered, ...: best first), or steps, updated (newest first), name."),
) -> None:
    """A table of runs: preset, family, steps done / planned, best metric, status (finished, running, interrupted,
    failed)."""
    from ganforge.apps import runs as listing

    if not directory.is_dir():
        raise UserError(f"{directory} is not a folder: pass the folder that holds your runs (default: runs)")
    rows = []
    for path in listing.find_runs(directory):
        try:
            rows.append(listing.describe(path))
        except Exception as exc:  # noqa: BLE001 - one damaged run must not hide the others
            typer.echo(f"warning: skipped {path}: {' '.join(str(exc).split())[:160]}", err=True)
    key = sort.strip().lower()
    listing.check_sort_key(key, rows)
    if not rows:
        typer.echo(f"no runs under {directory}")
        return
    typer.echo(listing.render(listing.sort_rows(rows, key), directory))


@app.command("prepare")
def prepare_command(
    source: str = typer.Argument(..., help="A folder of images (recursive; subfolders are classes), a .zip, an "
                                 ".npz (images [, labels]) or a named set (mnist, cifar10, mnist-embedded, ...)."),
    out: Path = typer.Option(..., "--out", help="A new or empty folder; an interrupted prepare's folder resumes."),
    resolution: int = typer.Option(256, "--resolution", help="Side of the square images written."),
    channels: int = typer.Option(3, "--channels", help="1 (grey) or 3 (RGB)."),
    resize: str = typer.Option("center-crop", "--resize", help="center-crop, pad or stretch."),
    resampler: str = typer.Option("lanczos", "--resampler", help="lanczos, bicubic or bilinear."),
    background: str = typer.Option("white", "--background", help="What transparency (and pad) becomes: white, "
                                   "black or #rrggbb."),
    shard_size: int = typer.Option(10_000, "--shard-size", help="Images per tar shard."),
    pairs: bool = typer.Option(False, "--pairs", help="SRC/A and SRC/B with matching file names: (A, B) pairs "
                               "for image-to-image families."),
    workers: int = typer.Option(0, "--workers", help="Decoding processes (0: one per core)."),
    root: str = typer.Option("data", "--root", help="Where named sets are (or are downloaded to)."),
    download: bool = typer.Option(False, "--download", help="Download a named set that is not under --root."),
) -> None:
    """Convert images into tar shards + index.json for --data shards:DIR: resized, deduplicated, resumable."""
    from ganforge.apps.prepare import Options, prepare

    opt = Options(source=source, resolution=resolution, channels=channels, resize=resize, resampler=resampler,
                  background=background, shard_size=shard_size, pairs=pairs)
    s = prepare(source, out, opt, workers=workers, root=root, download=download)
    resumed = f", {s.resumed_from} shards kept from an interrupted prepare" if s.resumed_from else ""
    typer.echo(f"{out}: {s.count:,} images in {s.shards} shards, {s.skipped} unreadable and {s.duplicates} "
               f"duplicates skipped (see {out / 'report.txt'}){resumed}. Train with --data shards:{out}")


@app.command("import-weights")
def import_weights(
    weights: Path = typer.Argument(..., help="A PyTorch .pt/.pth file holding a generator's state dict."),
    preset: str = typer.Option(..., "--preset", help="The preset whose generator architecture the weights fit."),
    out: Path = typer.Option(..., "--out", help="New run directory to create."),
    trust: bool = typer.Option(False, "--trust", help="Required: the file is a pickle; read it only if you trust it."),
    key: Optional[str] = typer.Option(None, "--key", help="Entry holding the state dict, e.g. netG."),
    set_: List[str] = typer.Option([], "--set", help="Config overrides, as for train."),
) -> None:
    """Import old PyTorch generator weights (torch.load with weights_only=True) into a ganforge run directory."""
    from ganforge.config import load_config
    from ganforge.apps.importer import import_generator

    _check_out(out, folder=True)
    ckpt = import_generator(weights, load_config(preset, list(set_)), out, trust=trust, key=key)
    typer.echo(f"imported {weights} into {out} ({ckpt.name}); try: ganforge sample {out} --out grid.png")


@app.command("export")
def export_model(
    run_dir: Path = typer.Argument(..., help="A run directory made by 'ganforge train' (or a --format folder export)."),
    format_: str = typer.Option(..., "--format", help="onnx (onnxruntime; needs pip install 'ganforge[export]'), "
                                "torchscript (torch.jit.load, no ganforge) or folder (safetensors for "
                                "load_generator, Hugging Face layout)."),
    out: Path = typer.Option(..., "--out", help="A new folder: the graphs or weights, config.json, README.md (the "
                             "model card) and reference.npz."),
) -> None:
    """Export a trained generator or translator for use outside ganforge, checked against torch at export time."""
    from ganforge.apps.export import export

    export(run_dir, format_.strip().lower(), out, log=lambda line: typer.echo(line, err=True))
    typer.echo(str(out))


def _bench_names(text: str, known) -> list[str]:
    """Comma-separated benchmark names, each one of ``known``; else one line and exit 2."""
    names = [b.strip() for b in text.split(",") if b.strip()]
    unknown = [b for b in names if b not in known]
    if unknown or not names:
        _fail(f"unknown benchmark {(unknown or [text])[0]!r}: choose from {', '.join(known)}")
    return names


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        _fail(f"bad --seeds {text!r}: write comma-separated integers, e.g. --seeds 0,1,2")
    return seeds


def _check_bench_outputs(out: Optional[Path], write: Optional[Path]) -> None:
    """A benchmark's run folder and markdown file are checked before minutes of training, not after."""
    if out is not None:
        _check_out(out, folder=True)
    if write is not None:
        _check_out(write, flag="--write")


def _bench_command(name: str, flags: dict) -> str:
    """The command line that reproduces a benchmark's table (written beside it)."""
    return " ".join([f"ganforge bench {name}"] + [f"{k} {v:g}" if isinstance(v, float) else f"{k} {shlex.quote(str(v))}"
                                                  for k, v in flags.items() if v is not None])


@bench_app.command("data")
def bench_data(
    sizes: str = typer.Option("64,256", "--sizes", help="Image sizes to prepare, stream and train at."),
    images: int = typer.Option(2000, "--images", min=64, help="Synthetic source images for the speed rows."),
    big: int = typer.Option(1_000_000, "--big", min=1000, help="Synthetic images streamed for the peak RSS."),
    workers: int = typer.Option(2, "--workers", min=1, help="prepare's pool and the DataLoader's workers."),
    write: Optional[Path] = typer.Option(None, "--write", help="Replace the data block of this markdown file."),
) -> None:
    """prepare and shards streaming (images/s) against what a training step consumes, and peak RSS when streaming
    a million images."""
    from ganforge.bench import data as bench

    _check_bench_outputs(None, write)
    px = _int_list(sizes, "--sizes")
    command = _bench_command("data", {"--sizes": sizes, "--images": images, "--big": big, "--workers": workers,
                                      "--write": write})
    bench.main(px, images=images, big=big, workers=workers, write=write, command=command)


@bench_app.command("throughput")
def bench_throughput(
    steps: int = typer.Option(30, "--steps", min=2, help="Timed steps per configuration (after warm-up)."),
    device: str = typer.Option("auto", "--device"),
    sizes: str = typer.Option("64,32", "--sizes", help="Image sizes to time."),
    write: Optional[Path] = typer.Option(None, "--write", help="Append the result table to this markdown file."),
    e2e: bool = typer.Option(False, "--e2e", help="Whole runs instead: ganforge train vs pytorch/examples' "
                             "DCGAN script's algorithm on one folder, start-up included (CPU)."),
    e2e_steps: int = typer.Option(78, "--e2e-steps", min=1, help="Steps of batch 64 per run (78: one epoch of the digits)."),
    folder: Optional[Path] = typer.Option(None, "--folder", help="Image folder (ImageFolder layout) for --e2e; "
                                          "default: the embedded digits written as PNGs."),
    repeats: int = typer.Option(2, "--repeats", min=1, help="Runs per trainer with --e2e."),
    batches: str = typer.Option("64", "--batches", help="Batch sizes to time, e.g. 64,256."),
    fast: bool = typer.Option(True, "--fast/--no-fast", help="Add the fast path's row (bf16 on GPUs, fused "
                              "capturable Adam, CUDA graph; eager with the reason where capture is refused)."),
) -> None:
    """ganforge's DCGAN step vs the seeds' plain textbook step, identical models: images per second."""
    from ganforge.bench import throughput
    _check_bench_outputs(None, write)

    if e2e:
        throughput.main_e2e(folder=folder, steps=e2e_steps, repeats=repeats, write=write)
        return
    size_list = _int_list(sizes, "--sizes")
    bad = [s for s in size_list if s < 16 or s > 256 or s & (s - 1)]
    if bad:
        _fail(f"--sizes {bad[0]}: each size must be a power of two from 16 to 256, e.g. --sizes 64,32")
    batch_list = _int_list(batches, "--batches")
    if any(b < 1 for b in batch_list):
        _fail(f"--batches {batches}: each batch size must be at least 1, e.g. --batches 64,256")
    throughput.main(steps=steps, device=device, sizes=size_list, write=write, batch=batch_list[0],
                    batches=batch_list, fast=fast)


@bench_app.command("quality")
def bench_quality(
    seconds: float = typer.Option(300, "--seconds", min=0, help="Training budget per preset (wall clock); 0: each preset's own step budget."),
    out: Path = typer.Option(Path("runs/bench-quality"), "--out", help="Where the runs go."),
    write: Optional[Path] = typer.Option(None, "--write", help="Replace the quality block of this markdown file."),
    seed: int = typer.Option(0, "--seed"),
    ablation: bool = typer.Option(False, "--ablation", help="Instead: the variants of the default recipe that chose "
                                  "it, each on one thread, scored alike (block 'recipe')."),
    jobs: int = typer.Option(2, "--jobs", min=1, help="With --ablation: variants trained at once."),
    only: Optional[str] = typer.Option(None, "--only", help="With --ablation: comma-separated variant names."),
) -> None:
    """The default dcgan-mnist recipe vs the seeds' plain DCGAN loop, same CPU budget, grids side by side."""
    from ganforge.bench import quality
    _check_bench_outputs(out, write)

    if ablation:
        from ganforge.bench import recipe

        names = [v[0] for v in recipe.VARIANTS]
        picked = _bench_names(only, names) if only else None
        recipe.main(out_root=out if out != Path("runs/bench-quality") else Path("runs/bench-recipe"), write=write,
                    seed=seed, jobs=jobs, only=picked)
        return
    quality.main(seconds=seconds or None, out_root=out, write=write, seed=seed)


@bench_app.command("coverage")
def bench_coverage(
    benches: str = typer.Option("ring8,grid25,stacked-mnist", "--benches", help="Which benchmarks to run."),
    seconds: Optional[float] = typer.Option(None, "--seconds", min=1, help="Training budget per run (default: the preset's steps)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Override the presets' step budgets."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated seeds: one training per seed, the table shows the mean."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda (default: the preset's)."),
    out: Path = typer.Option(Path("runs/bench-coverage"), "--out"),
    write: Optional[Path] = typer.Option(None, "--write", help="Replace the coverage block of this markdown file."),
) -> None:
    """Mode-collapse benchmarks: ring of 8 and grid of 25 Gaussians, Stacked MNIST (1,000 modes)."""
    from ganforge.bench import coverage
    _check_bench_outputs(out, write)

    names = _bench_names(benches, coverage.BENCHES)
    seed_list = _seed_list(seeds)
    command = _bench_command("coverage", {"--benches": ",".join(names), "--seconds": seconds, "--steps": steps,
                                          "--seeds": ",".join(map(str, seed_list)), "--device": device,
                                          "--write": write})
    coverage.main(names, seconds=seconds, out_root=out, write=write, seeds=seed_list, steps=steps, device=device,
                  command=command)


@bench_app.command("small-data")
def bench_small_data(
    experiments: str = typer.Option("digits,transfer,color", "--experiments",
                                    help="Comma-separated: digits (100/500/2,000 digits x no aug / DiffAugment / ADA), "
                                         "transfer (0-4 -> 100 images of 5-9), color (icon folder)."),
    steps: int = typer.Option(2000, "--steps", min=1, help="Steps of every digits run and of the transfer source."),
    transfer_steps: int = typer.Option(1000, "--transfer-steps", min=1, help="Steps of the 100-image transfer runs."),
    color_steps: Optional[int] = typer.Option(None, "--color-steps", min=1, help="Steps of the colour runs "
                                              "(default: the presets' own)."),
    jobs: int = typer.Option(2, "--jobs", min=1, help="Runs trained at once, each on one thread."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("runs/bench-small-data"), "--out"),
    write: Optional[Path] = typer.Option(None, "--write", help="Replace the small-data block of this markdown file."),
) -> None:
    """Small training sets: augmentation (none, DiffAugment, ADA), fine-tuning with FreezeD, colour icons."""
    from ganforge.bench import small_data
    _check_bench_outputs(out, write)

    names = _bench_names(experiments, small_data.EXPERIMENTS)
    command = _bench_command("small-data", {"--experiments": ",".join(names), "--steps": steps,
                                            "--transfer-steps": transfer_steps, "--color-steps": color_steps,
                                            "--jobs": jobs, "--write": write})
    small_data.main(names, out_root=out, write=write, seed=seed, jobs=jobs, steps=steps,
                    transfer_steps=transfer_steps, color_steps=color_steps, command=command)


def _click_exception_types() -> tuple[type, ...]:
    """The usage-error base classes of whatever typer is installed.

    typer up to 0.2x re-raises click's ``ClickException``; later releases vendor click as ``typer._click`` and
    base its exceptions on ``typer.TyperException``, and no longer install click at all, so neither may be
    imported unconditionally.
    """
    types: list[type] = []
    if isinstance(getattr(typer, "TyperException", None), type):
        types.append(typer.TyperException)
    try:
        import click
    except ImportError:
        pass
    else:
        types.append(click.ClickException)
    return tuple(types)


def _is_usage_error(exc: BaseException) -> bool:
    return any(cls.__name__ == "UsageError" for cls in type(exc).__mro__)


@bench_app.command("semi")
def bench_semi(
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds: one SSGAN and one baseline each."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Override the preset's steps (both models)."),
    device: Optional[str] = typer.Option(None, "--device"),
    out: Path = typer.Option(Path("runs/bench-semi"), "--out"),
    write: Optional[Path] = typer.Option(None, "--write", help="Replace the semi block of this markdown file."),
) -> None:
    """Semi-supervised GAN (100 labels) vs the same classifier trained on the 100 labels alone."""
    from ganforge.bench import semi
    _check_bench_outputs(out, write)

    seed_list = _seed_list(seeds)
    command = _bench_command("semi", {"--seeds": ",".join(map(str, seed_list)), "--steps": steps,
                                      "--device": device, "--write": write})
    semi.main(seed_list, steps=steps, out_root=out, write=write, device=device, command=command)


@bench_app.command("translation")
def bench_translation(
    tasks: str = typer.Option("sr,inpaint,edges,thin2thick", "--tasks", help="Which digit tasks to run."),
    seed: int = typer.Option(0, "--seed"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Override the presets' steps."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda (default: the preset's)."),
    out: Path = typer.Option(Path("runs/bench-translation"), "--out"),
    write: Optional[Path] = typer.Option(None, "--write", help="Update the translation block of this markdown file."),
) -> None:
    """Pix2Pix on the digit tasks (vs the input and an L1-only U-Net) and CycleGAN thin <-> thick, on test digits."""
    from ganforge.bench import translation
    _check_bench_outputs(out, write)

    names = _bench_names(tasks, translation.TASKS)
    command = _bench_command("translation", {"--tasks": ",".join(names), "--seed": seed, "--steps": steps,
                                             "--device": device, "--write": write})
    translation.main(names, seed=seed, steps=steps, out_root=out, write=write, device=device, command=command)


@bench_app.command("style")
def bench_style(
    images: Optional[int] = typer.Option(None, "--images", min=1, help="Real images each preset is shown (default: stylegan-mnist's budget)."),
    presets: str = typer.Option("dcgan-mnist,progan-mnist,stylegan-mnist", "--presets"),
    psis: str = typer.Option("0.5,0.6,0.7,0.8,0.9,1.0", "--psis", help="Truncation values for the StyleGAN run ('' to skip)."),
    n: int = typer.Option(10_000, "--n", min=100, help="Samples per evaluation."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device"),
    out: Path = typer.Option(Path("runs/bench-style"), "--out"),
    write: Optional[Path] = typer.Option(None, "--write", help="Replace the style block of this markdown file."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Trainings at a time (each its own process; timings then share the CPU)."),
) -> None:
    """ProGAN and StyleGAN vs DCGAN at the same number of training images; truncation vs precision/recall."""
    from ganforge.bench import style
    _check_bench_outputs(out, write)
    from ganforge.config import preset_names

    names = _bench_names(presets, preset_names())
    try:
        psi_list = [float(p) for p in psis.split(",") if p.strip()]
    except ValueError:
        _fail(f"bad --psis {psis!r}: write comma-separated numbers, e.g. --psis 0.5,0.7,1.0")
    command = _bench_command("style", {"--images": images, "--presets": ",".join(names), "--psis": psis or "''",
                                       "--n": n, "--seed": seed, "--device": device, "--jobs": jobs,
                                       "--write": write})
    style.main(images, names, psi_list, n=n, seed=seed, out_root=out, write=write, device=device, command=command,
               jobs=jobs)


@bench_app.command("ablation")
def bench_ablation(
    benches: str = typer.Option("ring8,grid25,stacked-mnist", "--benches", help="Which benchmarks to run."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Steps per training (default: per benchmark)."),
    seed: int = typer.Option(0, "--seed"),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda (default: the preset's)."),
    out: Path = typer.Option(Path("runs/bench-ablation"), "--out"),
    write: Optional[Path] = typer.Option(None, "--write", help="Update the ablation block of this markdown file "
                                         "(the rows this run trains; the others are kept)."),
    only: str = typer.Option("", "--only", help="Comma-separated variants to run, e.g. 'LSGAN,+ R1 0.1' "
                             "(default: all of each benchmark's)."),
    set_: List[str] = typer.Option([], "--set", help="Overrides added to every row, e.g. train.precision=fp32."),
) -> None:
    """Loss x regularizer on ring8, grid25 and Stacked MNIST: which combination prevents mode collapse."""
    from ganforge.bench import ablation
    _check_bench_outputs(out, write)

    names = _bench_names(benches, ablation.STEPS)
    picked = [v.strip() for v in only.split(",") if v.strip()]
    known = {v for b in names for v in ablation.variants(b)}
    for v in picked:
        if v not in known:
            raise UserError(f"--only {v!r}: no such variant; choose from {', '.join(sorted(known))}")
    flags = {"--benches": ",".join(names), "--steps": steps, "--seed": seed, "--device": device,
             "--only": ",".join(picked) or None, "--write": write}
    command = _bench_command("ablation", flags) + "".join(f" --set {shlex.quote(o)}" for o in set_)
    ablation.main(names, steps=steps, seed=seed, out_root=out, write=write, device=device, only=picked,
                  command=command, common=set_)


def _exit_now(code: int) -> None:
    """End a finished command without the interpreter's teardown: every file is closed and synced by then, and
    torch's static destructors would page in ~130 MB of its libraries, the largest memory peak of a CPU run."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    """Entry point: turn user errors into one line and exit code 2; any other exception keeps its traceback."""
    try:
        rc = app(standalone_mode=False)  # returns (not raises) the code of a typer.Exit here
        _exit_now(rc if isinstance(rc, int) else 0)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt as exc:
        typer.echo(str(exc) or "interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # usage errors (bad option, missing argument) come through here
        if not isinstance(exc, _click_exception_types()):
            raise
        typer.echo(f"error: {_one_line(exc)}", err=True)
        sys.exit(2 if _is_usage_error(exc) else getattr(exc, "exit_code", 1))


def _one_line(exc: BaseException) -> str:
    """A usage error as one line, with where to look (click prints Usage / Try --help / Error on three)."""
    text = " ".join(exc.format_message().split()) if hasattr(exc, "format_message") else str(exc)
    ctx = getattr(exc, "ctx", None)
    where = getattr(ctx, "command_path", None) or "ganforge"
    return f"{text} (see '{where} --help')" if _is_usage_error(exc) else text


if __name__ == "__main__":
    main()
