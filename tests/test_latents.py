"""Latent walks, projection and the style-only switches, on families without a w space (StyleGAN's own tests:
test_stylegan.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from ganforge.errors import UserError
from ganforge.apps.latents import interpolation_frames, slerp, walk
from ganforge.apps.project import learning_rate, project
from ganforge.apps.sampling import load_generator
from ganforge.train import train

quiet = dict(progress=False, log=lambda s: None)


def _cli(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "ganforge", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("latents") / "run"
    train(tiny_config("dcgan", steps=40, lr_g=1e-3, lr_d=1e-3), run, **quiet)
    return run


@pytest.fixture(scope="module")
def cdcgan_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("latents") / "cond"
    train(tiny_config("cdcgan", steps=4), run, **quiet)
    return run


def test_slerp_keeps_endpoints_and_interpolates_the_norm_on_the_sphere():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 16, generator=gen), torch.randn(3, 16, generator=gen) * 2
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid.norm(dim=1), (a.norm(dim=1) + b.norm(dim=1)) / 2, atol=1e-4)
    # the direction is halfway in angle: equal angles to both ends
    cos = lambda u, v: (u * v).sum(1) / (u.norm(dim=1) * v.norm(dim=1))  # noqa: E731
    assert torch.allclose(cos(mid, a), cos(mid, b), atol=1e-5)
    assert torch.allclose(slerp(a, a.clone(), 0.3), a, atol=1e-5)  # parallel: no division by sin(0)


def test_walk_passes_through_every_key_in_order_and_loops_back():
    keys = torch.eye(3)
    path = walk(keys, 5, spherical=False)
    assert path.shape == (5, 3)
    assert torch.equal(path[0], keys[0]) and torch.equal(path[2], keys[1]) and torch.equal(path[4], keys[2])
    looped = walk(keys, 6, spherical=False, loop=True)  # 3 segments, 2 frames each; the first key is not repeated
    assert torch.equal(looped[0], keys[0]) and torch.equal(looped[2], keys[1]) and torch.equal(looped[4], keys[2])
    with pytest.raises(UserError, match="at least two seeds"):
        walk(keys[:1], 5, spherical=True)


def test_interpolation_frames_start_and_end_at_the_seeds_own_samples(dcgan_run):
    g = load_generator(dcgan_run, device="cpu")
    frames = interpolation_frames(g, [3, 8], 7)
    assert frames.shape == (7, 1, 16, 16)
    assert torch.allclose(frames[0], g.sample(1, seed=3)[0], atol=1e-5)
    assert torch.allclose(frames[-1], g.sample(1, seed=8)[0], atol=1e-5)
    with pytest.raises(UserError, match="style-based"):
        interpolation_frames(g, [3, 8], 7, space="w")


def test_interpolate_cli_writes_a_gif_of_the_walk(dcgan_run, tmp_path):
    import imageio.v3 as iio

    out = tmp_path / "walk.gif"
    res = _cli("interpolate", dcgan_run, "--seeds", "1,2,3", "--frames", "9", "--scale", "2", "--out", out)
    assert res.returncode == 0, res.stderr
    frames = iio.imread(out, index=None)
    assert frames.shape[0] == 9 and frames.shape[1:3] == (32, 32)


def test_interpolate_to_mp4_needs_ffmpeg_or_says_how_to_get_it(dcgan_run, tmp_path):
    out = tmp_path / "walk.mp4"
    res = _cli("interpolate", dcgan_run, "--seeds", "1,2", "--frames", "8", "--out", out)
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        assert res.returncode == 2 and "ganforge[video]" in res.stderr and not out.exists()
        return
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 0


def test_conditional_walks_hold_the_label(cdcgan_run):
    g = load_generator(cdcgan_run, device="cpu")
    frames = interpolation_frames(g, [1, 2], 4, label=5)
    assert torch.allclose(frames[0], g.sample(1, seed=1, labels=[5])[0], atol=1e-5)


def test_projection_recovers_an_image_the_generator_made(dcgan_run):
    g = load_generator(dcgan_run, device="cpu")
    made = g.sample(1, seed=11)
    res = project(g, made, steps=150)
    assert res.space == "z" and res.latent.shape == (16,)
    assert res.scores["psnr_db"] > 30  # on [0, 1] pixels: a near-exact reproduction
    assert torch.allclose(g.sample(1, z=res.latent[None]), res.image, atol=1e-5)  # the latent makes the image


def test_project_cli_writes_image_latent_gif_and_scores(dcgan_run, tmp_path):
    g = load_generator(dcgan_run, device="cpu")
    npz = tmp_path / "made.npz"
    u8 = ((g.sample(2, seed=5) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.savez(npz, arr_0=u8)
    out = tmp_path / "proj"
    res = _cli("project", dcgan_run, "--input", npz, "--index", 1, "--steps", 40, "--out", out)
    assert res.returncode == 0, res.stderr
    assert {p.name for p in out.iterdir()} == {"projected.png", "comparison.png", "latent.npy", "projection.gif",
                                               "projection.json"}
    assert np.load(out / "latent.npy", allow_pickle=False).shape == (16,)
    assert json.loads((out / "projection.json").read_text())["space"] == "z"


def test_learning_rate_warms_up_and_falls_to_zero():
    assert learning_rate(0.0, 0.1) == 0.0 and learning_rate(0.5, 0.1) == pytest.approx(0.1)
    assert learning_rate(0.99, 0.1) < 0.001


@pytest.mark.parametrize("args, says", [
    (["sample", "--truncation", "0.7", "--out", "{tmp}/x.png"], "--truncation needs a style-based generator"),
    (["sample", "--noise", "none", "--out", "{tmp}/x.png"], "--noise needs a style-based generator"),
    (["mix", "--out", "{tmp}/m.png"], "ganforge mix needs a style-based generator"),
    (["interpolate", "--seeds", "1", "--out", "{tmp}/w.gif"], "at least two seeds"),
    (["interpolate", "--out", "{tmp}/w.webm"], "write a .gif or an .mp4"),
    (["project", "--input", "{tmp}/missing.png", "--out", "{tmp}/p"], "does not exist"),
])
def test_style_and_latent_commands_refuse_bad_input_in_one_line(dcgan_run, tmp_path, args, says):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = _cli(args[0], dcgan_run, *args[1:])
    assert res.returncode == 2 and says in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not any(Path(tmp_path).iterdir())  # nothing written


# ------------------------------------------------------------------ style-based generators: w space

@pytest.fixture(scope="module")
def stylegan_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("latents") / "style"
    train(tiny_config("stylegan", steps=6), run, **quiet)
    return run


def test_sample_truncation_zero_draws_the_mean_w_image_for_every_seed(stylegan_run):
    g = load_generator(stylegan_run, device="cpu")
    a, b = g.sample(3, seed=1, truncation=0.0), g.sample(3, seed=2, truncation=0.0)
    assert torch.allclose(a, b.flip(0), atol=1e-5) and torch.allclose(a[0], a[1], atol=1e-5)
    assert torch.allclose(a[:1], g.synthesize(g.module.w_avg[None].cpu()), atol=1e-4)
    assert not torch.allclose(g.sample(2, seed=1, noise="random"), g.sample(2, seed=2, noise="random"))
    assert torch.equal(g.sample(2, seed=1, noise="random"), g.sample(2, seed=1, noise="random"))  # seeded noise


def test_mix_grid_crossover_zero_gives_the_column_seeds_and_full_crossover_the_row_seeds(stylegan_run):
    from ganforge.apps.latents import mixing_grid

    g = load_generator(stylegan_run, device="cpu")
    cols = g.sample(2, z=torch.cat([g.draw_z(1, 4), g.draw_z(1, 5)]))
    grid, nrow = mixing_grid(g, [1, 2], [4, 5], crossover=0)
    assert nrow == 3 and grid.shape == (9, 1, 16, 16)
    assert torch.allclose(grid[1:3], cols, atol=1e-5)  # the top row: the column seeds' own images
    assert torch.allclose(grid[4:6], cols, atol=1e-5) and torch.allclose(grid[7:9], cols, atol=1e-5)
    full, _ = mixing_grid(g, [1, 2], [4, 5], crossover=g.module.num_ws)
    assert torch.allclose(full[4], full[3], atol=1e-5) and torch.allclose(full[8], full[6], atol=1e-5)
    with pytest.raises(UserError, match="--crossover"):
        mixing_grid(g, [1], [2], crossover=g.module.num_ws + 1)


def test_w_walk_is_straight_in_w(stylegan_run):
    g = load_generator(stylegan_run, device="cpu")
    frames = interpolation_frames(g, [1, 2], 3, space="w")
    w = g.w_of(torch.cat([g.draw_z(1, 1), g.draw_z(1, 2)]))
    assert torch.allclose(frames[1:2], g.synthesize((w[:1] + w[1:]) / 2), atol=1e-5)


def test_projection_into_w_recovers_an_image_the_generator_made(stylegan_run):
    g = load_generator(stylegan_run, device="cpu")
    made, other = g.sample(2, seed=21)
    res = project(g, made[None], steps=200)
    assert res.space == "w" and res.latent.shape == (g.module.w_dim,)
    reached = float(((res.image - made) / 2).pow(2).mean())
    apart = float(((other - made) / 2).pow(2).mean())
    assert reached < apart / 10, (reached, apart)  # far closer than another sample of the same generator
    assert torch.allclose(g.synthesize(res.latent[None]), res.image, atol=1e-5)


def test_mix_and_sample_cli_on_a_style_run(stylegan_run, tmp_path):
    res = _cli("mix", stylegan_run, "--rows", "1,2", "--cols", "3,4,5", "--out", tmp_path / "mix.png")
    assert res.returncode == 0, res.stderr
    from PIL import Image

    with Image.open(tmp_path / "mix.png") as im:  # 3 rows x 4 columns of 16 px tiles, 2 px padding
        assert im.size == (4 * 18 + 2, 3 * 18 + 2)
    res = _cli("sample", stylegan_run, "--n", "4", "--truncation", "0.7", "--noise", "random",
               "--out", tmp_path / "s.npz")
    assert res.returncode == 0, res.stderr
    res = _cli("sample", stylegan_run, "--noise", "loud", "--out", tmp_path / "x.png")
    assert res.returncode == 2 and "--noise 'loud'" in res.stderr
