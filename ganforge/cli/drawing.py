"""Commands that draw from a trained generator: sample, mix, interpolate, project."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ganforge.cli.app import app
from ganforge.cli.errors import check_out, fail, int_list


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
    from ganforge.families.outputs import output_of

    lab = None if labels is None else int_list(labels, "--labels")
    kind = _sample_kind(out)
    check_out(out, folder=kind == "folder")
    g = load_generator(run_dir, device=device, checkpoint=checkpoint)
    if not output_of(g.config.model).images:
        fail("this run generates 2D points, not images: use the Python API (load_generator(...).sample)")
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
    fail(f"--out {out}: use a .png grid, an .npz file, or a folder name without extension")
    raise AssertionError("unreachable")


def _check_sample_size(n: int, model, kind: str, out: Path) -> None:
    """--n images must fit in memory at once (the API's own check, worded for the flag), and on disk."""
    from ganforge.apps.sampling import require_sample_memory
    from ganforge.memory import require_disk

    if kind == "grid" and n > MAX_GRID:
        fail(f"--n {n:,} images in one {out.suffix} grid: at most {MAX_GRID:,}; write an .npz or a folder for more")
    fix = "ask for fewer with --n, and draw more in several commands with different --seed values"
    require_sample_memory(n, model, f"--n {n:,}", fix)
    if kind == "folder":
        require_disk(n * 100, out, f"--n {n:,} PNG files", fix)  # ~100 bytes: a lower bound for a tiny PNG


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
        fail(f"--noise {noise!r}: choose one of {', '.join(NOISE_MODES)}")
    check_out(out)
    g = load_generator(run_dir, device=device)
    images, nrow = mixing_grid(g, int_list(rows, "--rows"), int_list(cols, "--cols"), crossover, truncation, noise)
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

    seed_list = int_list(seeds, "--seeds")
    check_out(out)
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

    check_out(out, folder=True)
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
