"""The colour set from icon themes: contexts as labels, duplicates dropped, splits by icon name, a clear error."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from ganforge.bench import colorset
from ganforge.errors import UserError

pytestmark = pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="needs librsvg2-bin")


def _theme(root, name, icons: dict[str, list[str]], seed: int):
    """A fake freedesktop theme: 48 px PNGs (random coloured blocks on transparency) per context."""
    rng = np.random.default_rng(seed)
    theme = root / name
    sections = []
    for ctx, names in icons.items():
        folder = theme / "48x48" / ctx.lower()
        folder.mkdir(parents=True)
        sections.append(f"[48x48/{ctx.lower()}]\nSize=48\nContext={ctx}\nType=Fixed\n")
        for icon in names:
            rgba = np.zeros((48, 48, 4), np.uint8)
            blocks = rng.integers(0, 256, (6, 6, 4), dtype=np.uint8)
            blocks[..., 3] = 255
            rgba[:] = np.kron(blocks, np.ones((8, 8, 1), np.uint8))
            Image.fromarray(rgba, "RGBA").save(folder / f"{icon}.png")
    (theme / "index.theme").write_text("[Icon Theme]\nName=x\nDirectories=a\n\n" + "\n".join(sections))


@pytest.fixture
def icons(tmp_path):
    names = {"Applications": [f"app{i}" for i in range(30)], "Actions": [f"act{i}" for i in range(30)],
             "Emotes": ["smile", "wink"]}
    _theme(tmp_path, "one", names, 0)
    _theme(tmp_path, "two", names, 1)  # the same names, other drawings
    # an alias: the same file under another name (drawn once), and an exact copy under a third name (dropped)
    one = tmp_path / "one" / "48x48" / "applications"
    (one / "alias.png").symlink_to(one / "app0.png")
    shutil.copy(one / "app1.png", one / "copy.png")
    return tmp_path


def test_contexts_label_duplicates_drop_and_names_split_together(icons, monkeypatch):
    monkeypatch.setattr(colorset, "MIN_CLASS", 10)
    cs = colorset.build_colorset(16, seed=3, root=icons, min_images=50, log=lambda s: None)
    assert cs.images.shape == (124, 16, 16, 3) and cs.images.dtype == np.uint8  # 2 x 62 drawings, copies gone
    assert cs.classes == ["actions", "apps", "other"]  # two emotes per theme: merged into other
    mine = set(cs.names[cs.themes == "one"])
    assert len(mine & {"alias", "app0"}) == 1 and "copy" not in mine  # a link drawn once, a copy dropped
    for name in ("app3", "act7", "smile"):
        where = cs.splits[cs.names == name]
        assert len(where) == 2 and where[0] == where[1]  # both themes' drawings in one split
    assert set(cs.splits) <= {"train", "val", "test"} and np.sum(cs.splits == "train") > 60
    assert not set(cs.names[cs.indices("train")]) & set(cs.names[cs.indices("test")])
    x = cs.tensor("test")
    assert x.shape[1:] == (3, 16, 16) and float(x.min()) >= -1 and float(x.max()) <= 1
    again = colorset.build_colorset(16, seed=3, root=icons, min_images=50, log=lambda s: None)
    assert np.array_equal(again.images, cs.images) and np.array_equal(again.splits, cs.splits)
    other = colorset.build_colorset(16, seed=4, root=icons, min_images=50, log=lambda s: None)
    assert not np.array_equal(other.splits, cs.splits)


def test_too_few_icons_names_the_packages(tmp_path):
    _theme(tmp_path, "one", {"Applications": ["a", "b"]}, 0)
    with pytest.raises(UserError, match="apt-get install tango-icon-theme") as err:
        colorset.build_colorset(16, root=tmp_path, log=lambda s: None)
    assert "\n" not in str(err.value)


def test_load_caches_by_fingerprint(icons, tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    first = colorset.load_colorset(16, root=icons, min_images=50, log=lambda s: None)
    assert len(list((tmp_path / "cache" / "colorset").glob("*.npz"))) == 1
    monkeypatch.setattr(colorset, "build_colorset", lambda *a, **k: pytest.fail("rebuilt despite the cache"))
    cached = colorset.load_colorset(16, root=icons, min_images=50, log=lambda s: None)
    assert np.array_equal(cached.images, first.images) and cached.classes == first.classes
