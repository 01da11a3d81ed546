"""Small-data subsets (issue 24): data.limit is a fixed, seeded, class-balanced subset; data.classes keeps and
remaps labels; folders take labels from their subfolders; bad subsets are refused in one line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.config import model_config
from ganforge.config_base import DataConfig
from ganforge.data import build_dataset, describe
from ganforge.data.subset import shares
from ganforge.errors import DataError
from test_cli import TINY, _assert_user_error, run


def _model(size: int = 16, channels: int = 1):
    return model_config(family="dcgan", image_size=size, channels=channels)


def _items(ds) -> torch.Tensor:
    return ds.tensor.flatten(1)


def test_limit_is_class_balanced_with_the_remainder_spread():
    ds = build_dataset(DataConfig(limit=500, split="train"), _model(), seed=0)
    assert len(ds) == 500 and torch.bincount(ds.labels, minlength=10).tolist() == [50] * 10
    assert "500 of 4,000 images, 50 per class" in describe(ds)
    odd = build_dataset(DataConfig(limit=23), _model(), seed=0)
    assert torch.bincount(odd.labels, minlength=10).tolist() == [3, 3, 3] + [2] * 7
    assert shares([1, 10, 10], 9) == [1, 4, 4]  # a small class gives all it has, the others share the rest


def test_same_seed_same_subset_and_another_seed_another():
    a = build_dataset(DataConfig(limit=100), _model(), seed=7)
    b = build_dataset(DataConfig(limit=100), _model(), seed=7)
    c = build_dataset(DataConfig(limit=100), _model(), seed=8)
    assert torch.equal(_items(a), _items(b)) and torch.equal(a.labels, b.labels)
    assert not torch.equal(_items(a), _items(c))
    assert torch.equal(torch.bincount(a.labels), torch.bincount(c.labels))  # both balanced


def test_classes_keep_and_remap_in_the_given_order():
    full = build_dataset(DataConfig(), _model(), seed=0)
    ds = build_dataset(DataConfig(classes=[7, 3, 5]), _model(), seed=0)
    assert ds.num_classes == 3 and sorted(set(ds.labels.tolist())) == [0, 1, 2]
    for new, old in enumerate([7, 3, 5]):
        assert (ds.labels == new).sum() == (full.labels == old).sum()
        assert torch.equal(_items(ds)[ds.labels == new], _items(full)[full.labels == old])
    both = build_dataset(DataConfig(classes=[3, 5, 7], limit=30), _model(), seed=1)
    assert torch.bincount(both.labels).tolist() == [10, 10, 10]
    assert "30 of 1,500 images, 10 per class, classes 3, 5, 7 as 0-2" in describe(both)


def test_bad_classes_are_refused():
    with pytest.raises(DataError, match="12 is not a class"):
        build_dataset(DataConfig(classes=[1, 12]), _model())
    with pytest.raises(ValueError, match="twice"):
        DataConfig(classes=[1, 1])


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 20), value, dtype=np.uint8), "L").save(path)


@pytest.fixture()
def pets(tmp_path) -> Path:
    root = tmp_path / "pets"
    for i in range(6):
        _png(root / "dog" / f"{i}.png", 200)
    for i in range(4):
        _png(root / "cat" / "deep" / f"{i}.png", 10)  # deeper files belong to the immediate subfolder
    return root


@pytest.mark.parametrize("scan", [None, False])
def test_folder_labels_come_from_subfolders(pets, scan):
    ds = build_dataset(DataConfig(spec=f"folder:{pets}"), _model(), scan=scan)
    assert ds.num_classes == 2 and ds.class_names == ["cat", "dog"]
    labels = [ds[i][1] for i in range(len(ds))]
    assert labels == [0] * 4 + [1] * 6
    assert all((ds[i][0].mean() > 0) == (labels[i] == 1) for i in range(len(ds)))  # dogs are the bright ones
    picked = build_dataset(DataConfig(spec=f"folder:{pets}", classes=["dog"], limit=3), _model(), scan=scan, seed=2)
    assert len(picked) == 3 and picked.num_classes == 1 and picked.class_names == ["dog"]
    assert all(picked[i][1] == 0 and "dog" in picked.paths[i] for i in range(3))


def test_images_directly_in_the_folder_stay_unlabelled(pets):
    _png(pets / "loose.png", 100)
    ds = build_dataset(DataConfig(spec=f"folder:{pets}"), _model())
    assert ds.num_classes is None and ds[0][1] == -1
    with pytest.raises(DataError, match="needs labels"):
        build_dataset(DataConfig(spec=f"folder:{pets}", classes=["dog"]), _model())
    assert len(build_dataset(DataConfig(spec=f"folder:{pets}", limit=4), _model(), seed=1)) == 4  # seeded random


def test_a_limited_run_resumes_on_its_subset(tiny, tmp_path):
    from ganforge.train.loop import train

    cfg = tiny("dcgan", steps=4)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"limit": 64})})
    train(cfg, tmp_path / "run", progress=False, log=lambda s: None, stop_after_steps=2)
    summary = train(cfg, tmp_path / "run", resume=True, progress=False, log=lambda s: None)  # no "trained with
    assert summary.steps == 4  # something else": the same seed drew the same subset


# --------------------------------------------------------------------------- the command line


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("sets, needles", [
    (["data.limit=6000"], ["data.limit=6,000", "5,000 images", "--set data.limit=5000"]),
    (["data.classes=[3,11]"], ["data.classes", "11", "0..9"]),
    (["data.spec=folder:loose", "data.classes=[0]"], ["data.classes needs labels", "subfolder"]),
])
def test_cli_refuses_a_bad_subset_in_one_line(tmp_path, sets, needles):
    for i in range(3):
        _png(tmp_path / "loose" / f"{i}.png", 50)
    before = _listing(tmp_path)
    args = [a for s in sets for a in ("--set", s)]
    res = run("train", "dcgan-mnist", "--steps", "2", "--out", str(tmp_path / "run"), *TINY, *args, cwd=tmp_path)
    _assert_user_error(res, *needles)
    assert _listing(tmp_path) == before, "a refused command wrote something"


def test_cli_prints_the_subset(tmp_path):
    res = run("train", "dcgan-mnist", "--dry-run", *TINY, "--set", "data.limit=40", "--set", "data.split=train")
    assert res.returncode == 0, res.stderr
    assert "40 of 4,000 images, 4 per class" in res.stderr


def test_folder_classes_named_by_numbers_are_their_names(tmp_path):
    for name, value in (("1", 10), ("10", 100), ("2", 200)):  # sorted names: "1", "10", "2"
        for i in range(2):
            _png(tmp_path / "f" / name / f"{i}.png", value)
    ds = build_dataset(DataConfig(spec=f"folder:{tmp_path / 'f'}", classes=[2, "10"]), _model())
    assert ds.class_names == ["2", "10"]
    assert [Path(p).parent.name for p, (_, y) in zip(ds.paths, ds) if y == 0] == ["2", "2"]


def test_the_class_fade_watch_is_off_when_data_classes_drops_some(tiny, tmp_path):
    """Its classifier knows all ten digits: with only 0 and 1 kept, the other eight would all read as faded."""
    from ganforge.train.loop import train

    lines: list[str] = []
    watched = tiny("dcgan", steps=4, guard={"class_samples": 100})
    kept = watched.model_copy(update={"data": watched.data.model_copy(update={"classes": [0, 1], "limit": 64})})
    train(watched, tmp_path / "all", progress=False, log=lines.append)
    assert any(l.startswith("class-fade watch:") for l in lines)  # on for the whole set ...
    lines.clear()
    train(kept, tmp_path / "kept", progress=False, log=lines.append)
    said = [l for l in lines if not l.startswith("done:")]  # (the run directory's name holds the test's)
    assert not any("class-fade watch" in l or "faded" in l or "classes at the end" in l for l in said), said


@pytest.mark.parametrize("interval, grids", [(0, 5), (16, 3)])
def test_min_interval_steps_spaces_the_grids_of_short_epochs(tiny, tmp_path, interval, grids):
    """256 images in batches of 32: an epoch is 8 steps; 32 steps draw the start and every epoch, or every 16
    steps (the last grid and the final one are the same file)."""
    from ganforge.train.loop import train

    cfg = tiny("dcgan", steps=32)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"min_interval_steps": interval})})
    train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    assert len(list((tmp_path / "run" / "samples").glob("e*-s*.png"))) == grids
