"""``ganforge bench ...``: the benchmark commands (speed and quality targets live there, not in tests)."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import List, Optional

import typer

from ganforge.cli.app import bench_app
from ganforge.cli.errors import check_out, fail, int_list
from ganforge.errors import UserError


def _bench_names(text: str, known, what: str = "benchmark") -> list[str]:
    """Comma-separated names (of benchmarks, or ``what``), each one of ``known``; else one line and exit 2."""
    names = [b.strip() for b in text.split(",") if b.strip()]
    unknown = [b for b in names if b not in known]
    if unknown or not names:
        fail(f"unknown {what} {(unknown or [text])[0]!r}: choose from {', '.join(known)}")
    return names


def _variant_names(only: str, known) -> list[str]:
    """``--only``'s comma-separated variants, each one of ``known`` (none: every variant); else one line."""
    picked = [v.strip() for v in only.split(",") if v.strip()]
    for v in picked:
        if v not in known:
            raise UserError(f"--only {v!r}: no such variant; choose from {', '.join(known)}")
    return picked


def _check_bench_outputs(out: Optional[Path], write: Optional[Path]) -> None:
    """A benchmark's run folder and markdown file are checked before minutes of training, not after."""
    if out is not None:
        check_out(out, folder=True)
    if write is not None:
        check_out(write, flag="--write")


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
    px = int_list(sizes, "--sizes")
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
    size_list = int_list(sizes, "--sizes")
    bad = [s for s in size_list if s < 16 or s > 256 or s & (s - 1)]
    if bad:
        fail(f"--sizes {bad[0]}: each size must be a power of two from 16 to 256, e.g. --sizes 64,32")
    batch_list = int_list(batches, "--batches")
    if any(b < 1 for b in batch_list):
        fail(f"--batches {batches}: each batch size must be at least 1, e.g. --batches 64,256")
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
    """The dcgan-mnist recipe (the default until issue 36) vs the seeds' plain DCGAN loop, same CPU budget, grids
    side by side."""
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
    seed_list = int_list(seeds, "--seeds")
    command = _bench_command("coverage", {"--benches": ",".join(names), "--seconds": seconds, "--steps": steps,
                                          "--seeds": ",".join(map(str, seed_list)), "--device": device,
                                          "--write": write})
    coverage.main(names, seconds=seconds, out_root=out, write=write, seeds=seed_list, steps=steps, device=device,
                  command=command)


@bench_app.command("small-data")
def bench_small_data(
    experiments: str = typer.Option("digits", "--experiments",
                                    help="Comma-separated: digits (sizes x augmentations x seeds), transfer (0-4 -> "
                                         "100 images of 5-9), color (icon folder)."),
    sizes: str = typer.Option("100,500,2000", "--sizes", help="Training digits per digits run (4000: all of them)."),
    augments: str = typer.Option("none,ada,ada-paper,diffaugment", "--augments",
                                 help="Comma-separated: none, diffaugment, ada (speed set by the run's length), "
                                      "ada-paper (ada_kimg 500), ada-bg (no colour), ada-t0.8 (target 0.8), "
                                      "ada-fast (ada_kimg 5)."),
    seeds: int = typer.Option(3, "--seeds", min=1, help="Seeds per digits row (first .. first+N-1): mean and spread."),
    first_seed: int = typer.Option(0, "--first-seed", min=0, help="The digits rows' first seed (a later seed alone: "
                                   "--first-seed 2 --seeds 1)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Steps of every digits run and of the "
                                        "transfer source (default: dcgan-mnist's own, 3,500)."),
    transfer_steps: int = typer.Option(1000, "--transfer-steps", min=1, help="Steps of the 100-image transfer runs."),
    color_steps: Optional[int] = typer.Option(None, "--color-steps", min=1, help="Steps of the colour runs "
                                              "(default: the presets' own)."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Runs trained at once, each on one thread."),
    seed: int = typer.Option(0, "--seed", help="Seed of the transfer and colour runs."),
    out: Path = typer.Option(Path("runs/bench-small-data"), "--out", help="Digits runs finished here before, with "
                             "the same settings, are scored again, not trained again."),
    write: Optional[Path] = typer.Option(None, "--write", help="Replace the small-data block of this markdown file."),
) -> None:
    """Small training sets at the presets' own budgets: augmentation over seeds, fine-tuning with FreezeD, colour."""
    from ganforge.bench import small_data
    _check_bench_outputs(out, write)

    names = _bench_names(experiments, small_data.EXPERIMENTS)
    augs = _bench_names(augments, small_data.AUGMENTS, "augmentation")
    size_list = int_list(sizes, "--sizes")
    if any(n < 1 or n > small_data.FULL for n in size_list):
        fail(f"bad --sizes {sizes!r}: each size must be 1 to {small_data.FULL} (the training digits)")
    command = _bench_command("small-data", {"--experiments": ",".join(names), "--sizes": sizes,
                                            "--augments": ",".join(augs), "--seeds": seeds,
                                            "--first-seed": first_seed or None, "--steps": steps,
                                            "--transfer-steps": transfer_steps if "transfer" in names else None,
                                            "--color-steps": color_steps, "--jobs": jobs, "--write": write})
    small_data.main(names, out_root=out, write=write, seed=seed, jobs=jobs, steps=steps, sizes=size_list,
                    augments=augs, seeds=seeds, first_seed=first_seed, transfer_steps=transfer_steps,
                    color_steps=color_steps, command=command)


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

    seed_list = int_list(seeds, "--seeds")
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
        fail(f"bad --psis {psis!r}: write comma-separated numbers, e.g. --psis 0.5,0.7,1.0")
    command = _bench_command("style", {"--images": images, "--presets": ",".join(names), "--psis": psis or "''",
                                       "--n": n, "--seed": seed, "--device": device, "--jobs": jobs,
                                       "--write": write})
    style.main(images, names, psi_list, n=n, seed=seed, out_root=out, write=write, device=device, command=command,
               jobs=jobs)


@bench_app.command("rpgan")
def bench_rpgan(
    benches: str = typer.Option("ring8,grid25", "--benches", help="Which benchmarks: ring8, grid25, stacked-mnist."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Steps per training (default: per benchmark)."),
    seed: int = typer.Option(0, "--seed"),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda (default: the preset's)."),
    out: Path = typer.Option(Path("runs/bench-rpgan"), "--out"),
    write: Optional[Path] = typer.Option(None, "--write", help="Update the rpgan block of this markdown file "
                                         "(the rows this run trains; the others are kept)."),
    only: str = typer.Option("", "--only", help="Comma-separated variants, e.g. 'GAN + R1 + R2,RpGAN + R1 + R2'."),
) -> None:
    """The same net and budget with the classic loss and with RpGAN, bare and with R1 + R2 (R3GAN's ablation)."""
    from ganforge.bench import rpgan
    _check_bench_outputs(out, write)

    names = _bench_names(benches, rpgan.STEPS)
    picked = _variant_names(only, rpgan.VARIANTS)
    command = _bench_command("rpgan", {"--benches": ",".join(names), "--steps": steps, "--seed": seed,
                                       "--device": device, "--only": ",".join(picked) or None, "--write": write})
    rpgan.main(names, steps=steps, seed=seed, out_root=out, write=write, device=device, only=picked, command=command)


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
    picked = _variant_names(only, sorted({v for b in names for v in ablation.variants(b)}))
    flags = {"--benches": ",".join(names), "--steps": steps, "--seed": seed, "--device": device,
             "--only": ",".join(picked) or None, "--write": write}
    command = _bench_command("ablation", flags) + "".join(f" --set {shlex.quote(o)}" for o in set_)
    ablation.main(names, steps=steps, seed=seed, out_root=out, write=write, device=device, only=picked,
                  command=command, common=set_)


@bench_app.command("metric-agreement")
def bench_metric_agreement(
    data: str = typer.Option("colour,digits", "--data", help="Comma-separated: colour (the icon set), digits."),
    candidates: str = typer.Option("pixels,random-conv,random-conv-x4,ssl-conv", "--candidates",
                                   help="Extractors to rank (pixels: raw 16x16 pixels, the floor); mnist-cnn is "
                                        "added on digits. ssl-conv@FIELD=VALUE[@...]: ssl-conv trained with "
                                        "other settings, e.g. ssl-conv@colour=0.5."),
    judge_epochs: int = typer.Option(30, "--judge-epochs", min=1, help="Epochs of each class judge."),
    judges: int = typer.Option(3, "--judges", min=1, help="Class judges (seeds S, S+1000, ...): the ground truth is "
                               "each set's mean rank over them."),
    ssl_steps: Optional[int] = typer.Option(None, "--ssl-steps", min=1, help="ssl-conv's training steps "
                                            "(default: its own, what auto uses)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=20, help="Reference and pool images each (default: "
                                        "all of the held-out part)."),
    judge_limit: Optional[int] = typer.Option(None, "--judge-limit", min=20, help="Judge training images "
                                              "(default: all)."),
    seed: int = typer.Option(0, "--seed"),
    gan_runs: bool = typer.Option(True, "--gan-runs/--no-gan-runs", help="Also rank samples of GANs (two families "
                                  "at several budgets) trained on the judge's part."),
    out: Path = typer.Option(Path("runs/bench-metric-agreement"), "--out", help="Where the GAN runs are trained "
                             "(finished runs are reused)."),
    write: Optional[Path] = typer.Option(None, "--write", help="Replace the metric-agreement block of this "
                                         "markdown file."),
) -> None:
    """Which extractor ranks image sets like a class judge: Spearman's rho per candidate, one-class and collapsed
    sets flagged."""
    from ganforge.bench import metric_agreement as bench
    from ganforge.metrics.extractors import extractor_names

    _check_bench_outputs(None, write)
    names = _bench_names(data, bench.DATASETS)
    variants = [c for c in candidates.split(",") if "@" in c]
    for v in variants:
        try:
            bench.ssl_variant(v.strip())
        except ValueError as exc:
            fail(f"--candidates: {exc}")
    plain = ",".join(c for c in candidates.split(",") if "@" not in c)
    cands = _bench_names(plain, ("pixels",) + extractor_names()) if plain.strip() or not variants else []
    cands += [v.strip() for v in variants]
    command = _bench_command("metric-agreement", {"--data": ",".join(names), "--candidates": ",".join(cands),
                                                  "--judge-epochs": judge_epochs, "--judges": judges,
                                                  "--ssl-steps": ssl_steps,
                                                  "--limit": limit, "--judge-limit": judge_limit, "--seed": seed,
                                                  "--out": out if gan_runs else None, "--write": write})
    command += "" if gan_runs else " --no-gan-runs"
    bench.main(names, cands, judge_epochs=judge_epochs, judges=judges, ssl_steps=ssl_steps, limit=limit,
               judge_limit=judge_limit, seed=seed, write=write, command=command, gan_root=out if gan_runs else None,
               log=lambda s: typer.echo(s, err=True))


@bench_app.command("colour")
def bench_colour(
    variants: str = typer.Option("dcgan-small,dcgan-small-no-ada,dcgan-small-rpgan,stylegan-small,r3gan-small",
                                 "--variants", help="Comma-separated recipes (bench/colour_quality.py's VARIANTS)."),
    n: int = typer.Option(1000, "--n", min=50, help="Samples scored per variant."),
    jobs: int = typer.Option(2, "--jobs", min=1, help="Runs trained at once, each on one thread."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("runs/bench-colour"), "--out", help="Where the runs are trained (finished runs "
                             "with the same settings are rescored, not retrained)."),
    scale: float = typer.Option(1.0, "--scale", min=0.01, help="Multiply every variant's steps (1: about "
                                "dcgan-small's own CPU time, ~3 minutes on a Xeon core, ~4.5 on an AMD EPYC core; the "
                                "64 px variants: ~10 minutes on an AMD EPYC core)."),
    write: Optional[Path] = typer.Option(None, "--write", help="Replace the colour block (colour64 at 64 px, "
                                         "-xSCALE when scaled) of this markdown file."),
) -> None:
    """Colour quality on the icon set at equal CPU time, at 32 px (or 64 px: the 64-px variants): FID[ssl-conv] on
    held-out icons, sample grids."""
    from ganforge.bench import colour_quality as bench

    _check_bench_outputs(out, write)
    names = _bench_names(variants, tuple(bench.VARIANTS), "variant")
    try:
        bench.one_side(names)
    except UserError as exc:
        fail(str(exc))
    command = _bench_command("colour", {"--variants": ",".join(names), "--n": n, "--jobs": jobs, "--seed": seed,
                                        "--scale": None if scale == 1 else scale, "--out": out, "--write": write})
    bench.main(names, root=out, n=n, seed=seed, jobs=jobs, write=write, command=command, scale=scale,
               log=lambda s: typer.echo(s, err=True))
