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


def test_the_tables_name_every_row_and_say_how_each_augmentation_compares_with_none():
    def row(name, fids, p=None):
        runs = [{"fid": f} for f in fids]
        return {"variant": name, "runs": runs, **small_data.aggregate(name, [
            {"fid": f, "steps": 10, "cpu_s": 1.0, "precision": 0.5, "recall": 0.4, "classes": 10, "ada_p": p}
            for f in fids])}
    digits = [row("n500-none", [10.0, 10.4, 9.6]), row("n500-ada", [12.0, 12.2, 11.8], 0.3),
              row(f"n{small_data.FULL}-none", [8.0, 8.0])]
    transfer = [{"variant": "scratch", "steps": 10, "cpu_s": 1.0, "fid": 90.0, "precision": 0.5, "recall": 0.4,
                 "classes": 10}, {"variant": "fine-tuned", "steps": 10, "cpu_s": 1.0, "fid": 60.0, "precision": 0.5,
                                  "recall": 0.4, "classes": 10}]
    text = small_data.render(digits, transfer, [], {"cpu": "test cpu", "logical_cores": 2, "load_avg": 1.0},
                             "ganforge bench small-data")
    assert text.startswith("<!-- bench:small-data:start -->") and text.endswith("<!-- bench:small-data:end -->")
    assert "| 500 | ada | 3 | 10 | 1 | **12.0 ± 0.2** | 12.0, 12.2, 11.8 |" in text and text.count("| 0.30 |") == 1
    assert "| 4,000 | none | 2 |" in text
    assert "- 500 digits, ada: +2.0 FID against none: worse beyond the seeds' spread (0.6)." in text
    assert "1.50x better than from scratch (target >= 2x: missed)" in text


def test_digits_rows_average_their_seeds_and_a_second_call_reuses_the_finished_runs(tmp_path, monkeypatch):
    """A tiny budget (ADA's p moves every 4 steps, at most 0 -> 1 in a tenth of the run, so 12 steps see it
    move): 2 augmentations x 2 seeds on 100 digits, each trained in its own process and scored on the
    held-out digits; each row is the seeds' mean and standard deviation, and the same call again trains nothing."""
    import json
    import statistics

    from ganforge.bench import recipe

    kw = dict(out_root=tmp_path, sizes=[100], augments=["none", "ada"], seeds=2, steps=12, log=lambda s: None)
    text = small_data.main(["digits"], **kw)
    for aug in ("none", "ada"):
        runs = [json.loads((tmp_path / "digits" / f"n100-{aug}" / f"seed{s}" / "bench_row.json").read_text())
                for s in (0, 1)]
        assert [r["steps"] for r in runs] == [12, 12] and runs[0]["fid"] != runs[1]["fid"]  # two seeds, two runs
        fids = [r["fid"] for r in runs]
        assert f"**{statistics.mean(fids):.1f} ± {statistics.stdev(fids):.1f}**" in text
        assert (runs[0]["ada_p"] is None) == (aug == "none")  # ADA's p is read from the run's last metrics line
    assert "| 100 | ada | 2 | 12 |" in text and "100 digits, ada: " in text

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(small_data, "train_variant", no_training)
    again = small_data.main(["digits"], **kw)
    assert again.splitlines()[3:] == text.splitlines()[3:]  # the same rows (the first lines name the machine's load)
    later = small_data.main(["digits"], **{**kw, "augments": ["none"], "seeds": 1, "first_seed": 1})
    seed1 = json.loads((tmp_path / "digits" / "n100-none" / "seed1" / "bench_row.json").read_text())
    assert "| 100 | none | 1 | 12 |" in later and f"**{seed1['fid']:.1f} ± 0.0**" in later  # seed 1 alone
    assert recipe.train_variant is not no_training


def test_a_verdict_counts_a_difference_only_beyond_the_seeds_spread():
    none = {"fid": 10.0, "fid_sd": 0.3, "seeds": 3}
    assert "worse beyond the seeds' spread (0.6)" in small_data.verdict({"fid": 11.0, "fid_sd": 0.3, "seeds": 3}, none)
    assert "within the seeds' spread" in small_data.verdict({"fid": 10.5, "fid_sd": 0.3, "seeds": 3}, none)
    assert "better beyond" in small_data.verdict({"fid": 5.0, "fid_sd": 0.3, "seeds": 3}, none)
    assert "one seed" in small_data.verdict({"fid": 5.0, "fid_sd": 0.0, "seeds": 1}, none)
