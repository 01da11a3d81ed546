"""Tests for ganforge.viz: exact pixel mapping, file sizes/shapes read back from disk, and atomic writes."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge import io_utils, viz
from ganforge.families.contract import Trainer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GAN_PANELS = Trainer.loss_panels  # the stats every shipped family logs


def _imgs(n: int, c: int = 1, h: int = 28, w: int = 28, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g) * 2 - 1


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0 and path.read_bytes()[:8] == PNG_MAGIC


def _leftovers(folder: Path) -> list[str]:
    """Temp files the atomic writer may have left behind (they start with a dot)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------------------------------------------ to_uint8
def test_to_uint8_exact_values_and_layout() -> None:
    x = torch.tensor([-1.0, 0.0, 1.0, -5.0, 5.0, 0.5]).view(1, 1, 1, 6)
    out = viz.to_uint8(x)
    assert out.dtype == np.uint8
    assert out.shape == (1, 1, 6, 1)
    # -1 -> 0, 0 -> 128 (127.5 rounds half to even), 1 -> 255, out-of-range clamped, 0.5 -> 191.25 -> 191
    assert out.ravel().tolist() == [0, 128, 255, 0, 255, 191]


def test_to_uint8_rgb_channels_last() -> None:
    x = torch.full((2, 3, 4, 5), -1.0)
    x[:, 1] = 1.0
    out = viz.to_uint8(x)
    assert out.shape == (2, 4, 5, 3)
    assert (out[..., 0] == 0).all() and (out[..., 1] == 255).all() and (out[..., 2] == 0).all()


@pytest.mark.parametrize("shape", [(28, 28), (4, 2, 8, 8), (0, 1, 8, 8)])
def test_bad_shapes_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        viz.to_uint8(torch.zeros(shape))


# ---------------------------------------------------------------------------------------------------------- grids
def test_image_grid_size_and_range() -> None:
    grid = viz.image_grid(_imgs(16), padding=2)
    side = 4 * (28 + 2) + 2  # nrow = ceil(sqrt(16)) = 4
    assert grid.shape == (3, side, side)
    assert grid.min() >= 0 and grid.max() <= 1


def test_save_grid_png_pixel_size(tmp_path: Path) -> None:
    out = viz.save_grid(_imgs(16), tmp_path / "grid.png")
    assert _is_png(out)
    with Image.open(out) as im:
        assert im.size == (4 * 30 + 2, 4 * 30 + 2)
        assert im.mode == "L"
    assert _leftovers(tmp_path) == []


def test_save_grid_rgb_non_square(tmp_path: Path) -> None:
    out = viz.save_grid(_imgs(10, c=3, h=16, w=16), tmp_path / "sub" / "g.png", nrow=5)  # parent is created
    with Image.open(out) as im:
        assert im.mode == "RGB"
        assert im.size == (5 * 18 + 2, 2 * 18 + 2)


def test_save_grid_class_per_row_labels(tmp_path: Path) -> None:
    labels = [c for c in range(10) for _ in range(10)]  # 10 x 10, one class per row
    out = viz.save_grid(_imgs(100), tmp_path / "cond.png", labels=labels)
    with Image.open(out) as im:
        assert im.size == (10 * 30 + 2, 10 * 30 + 2)
    # labels only set the layout: 5 classes x 4 samples -> rows of 4
    out2 = viz.save_grid(_imgs(20), tmp_path / "cond2.png", labels=[c for c in range(5) for _ in range(4)])
    with Image.open(out2) as im:
        assert im.size == (4 * 30 + 2, 5 * 30 + 2)
    with pytest.raises(ValueError):
        viz.save_grid(_imgs(4), tmp_path / "bad.png", labels=[0, 1])


def test_saved_grid_pixels_match_to_uint8(tmp_path: Path) -> None:
    img = _imgs(1)
    out = viz.save_grid(img, tmp_path / "one.png", padding=0)
    with Image.open(out) as im:
        np.testing.assert_array_equal(np.asarray(im), viz.to_uint8(img)[0, :, :, 0])


# ------------------------------------------------------------------------------------------------------------ GIF
def test_progress_gif_frames_and_hold(tmp_path: Path) -> None:
    paths = [viz.save_grid(_imgs(16, seed=i), tmp_path / f"epoch_{i:03d}.png") for i in range(5)]
    # a smaller frame must be padded, not break the GIF
    paths.append(viz.save_grid(_imgs(9, seed=99), tmp_path / "epoch_005.png"))
    out = viz.save_progress_gif(paths, tmp_path / "progress.gif", fps=4)
    with Image.open(out) as im:
        assert im.format == "GIF"
        assert im.n_frames == len(paths)
        assert im.size == (4 * 30 + 2, 4 * 30 + 2)
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
    assert durations[:-1] == [250] * (len(paths) - 1)
    assert durations[-1] == 750
    with pytest.raises(ValueError):
        viz.save_progress_gif([], tmp_path / "empty.gif")


# ----------------------------------------------------------------------------------------------------- loss plots
def _records(n: int = 50, probs: bool = True) -> list[dict]:
    recs: list[dict] = [{"event": "start", "run": "x"}]
    for s in range(n):
        r = {"step": s * 10, "loss_d": 1.4 - s * 0.01, "loss_g": 0.7 + s * 0.02, "lr": 2e-4}
        if probs:
            r.update(d_real=0.6, d_fake=0.4)
        recs.append(r)
        if s % 10 == 0:
            recs.append({"event": "checkpoint", "step": s * 10})
    recs.append({"step": 999, "fid": 42.0})  # eval record: no losses
    return recs


def test_plot_losses_from_jsonl_ignores_events(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    lines = [json.dumps(r) for r in _records()]
    log.write_text("\n".join(lines) + "\n\n" + '{"step": 1, "loss_d"', encoding="utf-8")  # truncated last line
    out = viz.plot_losses(log, tmp_path / "losses.png", GAN_PANELS)
    assert _is_png(out)
    with Image.open(out) as im:
        im.verify()


def test_plot_losses_from_records_without_probs(tmp_path: Path) -> None:
    out = viz.plot_losses(_records(probs=False), tmp_path / "l.png", GAN_PANELS)
    assert _is_png(out)


def test_plot_losses_no_usable_records(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        viz.plot_losses([{"event": "start"}, {"step": 1, "loss_d": 1.0}], tmp_path / "x.png", GAN_PANELS)
    assert not (tmp_path / "x.png").exists()


# ------------------------------------------------------------------------------------------------ other pictures
def test_real_vs_fake_and_points(tmp_path: Path) -> None:
    out = viz.save_real_vs_fake(_imgs(100, c=3, h=16, w=16), _imgs(64, seed=1, h=16, w=16), tmp_path / "rvf.png")
    assert _is_png(out)
    pts = viz.save_points_plot(torch.randn(500, 2), np.random.default_rng(0).normal(size=(300, 2)), tmp_path / "p.png")
    assert _is_png(pts)
    with pytest.raises(ValueError):
        viz.save_points_plot(torch.randn(5, 3), torch.randn(5, 2), tmp_path / "bad.png")
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------- exports for eval
@pytest.mark.parametrize("c, mode", [(1, "L"), (3, "RGB")])
def test_save_image_folder(tmp_path: Path, c: int, mode: str) -> None:
    imgs = _imgs(7, c=c, h=12, w=10)
    paths = viz.save_image_folder(imgs, tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [f"sample_{i:05d}.png" for i in range(7)]
    assert paths == [tmp_path / "out" / n for n in names]
    expected = viz.to_uint8(imgs)
    for p, e in zip(paths, expected):
        with Image.open(p) as im:
            assert im.mode == mode and im.size == (10, 12)
            np.testing.assert_array_equal(np.asarray(im).reshape(e.shape), e)


def test_save_npz_roundtrip(tmp_path: Path) -> None:
    imgs = _imgs(5, c=3, h=8, w=6)
    out = viz.save_npz(imgs, tmp_path / "samples.npz")
    assert out == tmp_path / "samples.npz" and out.exists()
    with np.load(out) as data:
        assert list(data.keys()) == ["arr_0"]
        arr = data["arr_0"]
    assert arr.dtype == np.uint8 and arr.shape == (5, 8, 6, 3)
    np.testing.assert_array_equal(arr, viz.to_uint8(imgs))
    assert _leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------- atomic writes
def test_interrupted_png_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_save(self: Image.Image, fp, format=None, **kw) -> None:  # noqa: A002
        Path(fp).write_bytes(PNG_MAGIC + b"half a picture")
        raise OSError("disk full")

    target = tmp_path / "grid.png"
    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        viz.save_grid(_imgs(4), target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "samples.npz"
    viz.save_npz(_imgs(2), target)
    before = target.read_bytes()

    def broken_savez(fh, *arrays) -> None:
        fh.write(b"PK\x03\x04partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", broken_savez)
    with pytest.raises(KeyboardInterrupt):
        viz.save_npz(_imgs(3), target)
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_atomic_target_permissions_are_not_private(tmp_path: Path) -> None:
    out = viz.save_npz(_imgs(1), tmp_path / "a.npz")
    assert out.stat().st_mode & 0o444 == 0o444 & ~io_utils._umask()


def test_a_left_temp_file_names_the_file_it_was_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal between the temp's creation and its rename can leave it (the writer never got to clean up): a
    resume must recognise its own leftovers, and nothing else, by name."""
    def interrupted(path, *_, **__):
        raise KeyboardInterrupt

    for name in ("progress.json", "report.txt", "noext"):
        monkeypatch.setattr(io_utils.os, "replace", interrupted)
        with pytest.raises(KeyboardInterrupt):
            io_utils.atomic_write_text(tmp_path / name, "x")
        monkeypatch.undo()
    assert _leftovers(tmp_path) == []  # the writer cleans up when it runs at all ...
    for name in ("progress.json", "report.txt", "noext"):  # ... the names it would have left
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".tmp{Path(name).suffix}", dir=tmp_path)
        os.close(fd)
        assert io_utils.atomic_temp_target(Path(tmp).name) == name
    for other in ("notes.txt", ".progress.json", ".progress.json.ab.tmp.json", ".a.json.abcdefgh.tmp.png"):
        assert io_utils.atomic_temp_target(other) is None, other


def test_plot_stats_draws_a_familys_own_statistics_and_evaluations(tmp_path):
    from ganforge import viz

    records = [{"step": s, "loss_d": 1.0, "loss_g": 1.0, "wasserstein": 5.0 / s, "grad_norm": 1.0, "lr_g": 1e-4}
               for s in range(1, 6)] + [{"step": 5, "eval": {"fid[mnist-cnn]": 30.0}}, {"step": 5, "event": "x"}]
    series = viz.family_stat_series(records, GAN_PANELS)
    assert sorted(series) == ["eval: fid[mnist-cnn]", "grad_norm", "wasserstein"]
    assert series["wasserstein"][1][-1] == 1.0
    out = viz.plot_stats(records, tmp_path / "stats.png", GAN_PANELS)
    assert out.is_file() and out.stat().st_size > 1000
    with pytest.raises(ValueError):
        viz.plot_stats([{"step": 1, "loss_d": 1.0, "loss_g": 1.0, "d_real": 0.5}], tmp_path / "none.png", GAN_PANELS)
