"""``ganforge bench small-data``: its colour folder and its tables (the runs themselves are the benchmark)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from ganforge.bench import small_data


def _png(path, side, color, alpha=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "RGBA" if alpha else "RGB"
    Image.new(mode, (side, side), color + ((128,) if alpha else ())).save(path)


def test_the_icon_folder_keeps_one_colour_picture_per_icon(tmp_path):
    themes = tmp_path / "icons"
    _png(themes / "a" / "16x16" / "apps" / "editor.png", 16, (255, 0, 0))  # too small
    _png(themes / "a" / "64x64" / "apps" / "editor.png", 64, (255, 0, 0))
    _png(themes / "a" / "128x128" / "apps" / "editor.png", 128, (250, 0, 0))  # the largest of the same icon
    _png(themes / "a" / "64x64" / "apps" / "editor-symbolic.png", 64, (0, 0, 0))  # one-colour: left out
    _png(themes / "b" / "64x64" / "apps" / "editor.png", 64, (0, 255, 0), alpha=True)  # another theme's own
    _png(themes / "b" / "64x64" / "apps" / "same.png", 64, (0, 255, 0), alpha=True)  # the same bytes: once
    out = tmp_path / "folder"
    assert small_data.icon_folder(out, themes) == 2
    names = sorted(p.name for p in out.iterdir())
    assert names[0] == "a-editor.png" and names[1] in ("b-editor.png", "b-same.png")
    with Image.open(out / "a-editor.png") as img:
        assert img.size == (128, 128) and np.asarray(img)[0, 0, 0] == 250


def test_the_tables_name_every_row_and_say_whether_each_target_is_met():
    def row(name, fid):
        return {"variant": name, "steps": 10, "cpu_s": 1.0, "fid": fid, "precision": 0.5, "recall": 0.4,
                "classes": 10}
    digits = [row("n500-none", 30.0), row("n500-ada", 12.0), row(f"n{small_data.FULL}-none", 10.0)]
    transfer = [row("scratch", 90.0), row("fine-tuned", 60.0)]
    text = small_data.render(digits, transfer, [], {"cpu": "test cpu"}, "ganforge bench small-data")
    assert text.startswith("<!-- bench:small-data:start -->") and text.endswith("<!-- bench:small-data:end -->")
    assert "| 500 | ada | 10 |" in text and "| 4,000 | none |" in text
    assert "1.20x the 4,000-digit run's (target <= 1.5x: met)" in text
    assert "0.40x the unaugmented run's" in text
    assert "1.50x better than from scratch (target >= 2x: missed)" in text
