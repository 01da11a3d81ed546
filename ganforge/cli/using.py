"""Commands that use, score, compare or ship trained runs: evaluate, classify, translate, report, demo, runs,
prepare, import-weights, export."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ganforge.cli.app import app
from ganforge.cli.errors import check_out
from ganforge.errors import UserError
from ganforge.metrics.registry import METRICS

EXTRACTOR_HELP = ("auto | mnist-cnn | ssl-conv | random-conv | random-conv-x4 | inception-v3 | dinov2-vit-b-14. "
                  "auto: mnist-cnn for digit sets, else ssl-conv (a small encoder trained self-supervised on the "
                  "reference, a CPU minute or two, cached; it ranked image sets closest to a class judge in 'ganforge "
                  "bench metric-agreement'). inception-v3 / dinov2-vit-b-14: for figures comparable with papers; "
                  "downloaded once, SHA-256 checked.")


@app.command()
def evaluate(
    source: Path = typer.Argument(..., help="A run directory, a SAMPLES.npz (arr_0 uint8 N,H,W,C) or a folder of images."),
    ref: str = typer.Option("mnist-embedded", "--ref", help="Reference data spec (same syntax as --data)."),
    metrics: str = typer.Option("fid,kid,is,prc,coverage", "--metrics", help=f"Comma-separated: {','.join(METRICS)}."),
    n: int = typer.Option(10_000, "--n", min=2, help="Images to generate/compare (files: at most their count)."),
    extractor: str = typer.Option("auto", "--extractor", help=EXTRACTOR_HELP),
    inception_weights: Optional[str] = typer.Option(None, "--extractor-weights", "--inception-weights",
                                                    help="A local weights file for inception-v3 or dinov2-vit-b-14 "
                                                         "(else found in torch's hub cache or downloaded once)."),
    data_root: str = typer.Option("data", "--data-root"),
    download: bool = typer.Option(False, "--download"),
    batch_size: int = typer.Option(250, "--batch-size", min=1),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device"),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write the JSON (default: eval.json beside the run)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute the reference statistics."),
) -> None:
    """Score generated images against a reference set: FID, KID, IS, precision/recall, mode coverage; 'copies' checks
    each sample against the training images (a run's own, else the --ref images) and draws copies.png."""
    import json

    from ganforge.io_utils import atomic_write_text
    from ganforge.apps.evaluate import eval_json_path, evaluate as run_eval, pictures_path
    from ganforge.metrics.pipeline import format_table

    check_out(out or eval_json_path(source))
    result = run_eval(source, ref, metrics.split(","), n=n, extractor=extractor, batch_size=batch_size, seed=seed,
                      device=device, data_root=data_root, download=download, inception_weights=inception_weights,
                      use_cache=not no_cache, log=lambda s: typer.echo(s, err=True), pictures=pictures_path(source))
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
        check_out(out)
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

    check_out(out, folder=out.suffix.lower() != ".npz")
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

    check_out(out)
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
    workers: int = typer.Option(0, "--workers", help="Decoding processes (0: one per core; at most 4 per core, never more than the images)."),
    root: str = typer.Option("data", "--root", help="Where named sets are (or are downloaded to)."),
    download: bool = typer.Option(False, "--download", help="Download a named set that is not under --root."),
) -> None:
    """Convert images into tar shards + index.json for --data shards:DIR: resized, deduplicated, resumable."""
    from ganforge.apps.prepare import Options, prepare

    opt = Options(source=source, resolution=resolution, channels=channels, resize=resize, resampler=resampler,
                  background=background, shard_size=shard_size, pairs=pairs)
    try:
        s = prepare(source, out, opt, workers=workers, root=root, download=download)
    except KeyboardInterrupt as exc:  # typer would turn it into a silent exit 130
        typer.echo(str(exc) or "interrupted", err=True)
        raise typer.Exit(130) from None
    if s.complete:
        typer.echo(f"{out}: already complete, {s.count:,} images in {s.shards} shards: nothing to do (to rebuild it, "
                   f"delete {out} or prepare into a new --out). Train with --data shards:{out}")
        return
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

    check_out(out, folder=True)
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
