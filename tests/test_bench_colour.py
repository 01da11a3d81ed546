"""``bench colour``: the table against the baseline, and bad names refused before any training."""
from __future__ import annotations

from typer.testing import CliRunner

from ganforge.bench import colour_quality as cq
from ganforge.cli import app


def _row(name: str, fid: float) -> dict:
    scores = {"fid": fid, "precision": 0.5, "recall": 0.4}
    return {"variant": name, "steps": 1000, "cpu_s": 100.0, "val": scores, "test": dict(scores, fid=fid + 1)}


def test_the_table_gives_each_variants_change_against_the_baseline():
    md = cq.render([_row("dcgan-small", 100.0), _row("r3gan-small", 60.0), _row("stylegan-small", 120.0)],
                   {"cpu": "test cpu", "logical_cores": 2, "torch": "x"}, "cmd")
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in md.splitlines() if line.startswith("| ")}
    assert rows["r3gan-small"][4] == "-40%" and rows["stylegan-small"][4] == "+20%"
    assert rows["dcgan-small"][4] == "-" and "test cpu" in md
    assert md.startswith("<!-- bench:colour:start -->") and md.endswith("<!-- bench:colour:end -->")


def test_every_variant_names_a_preset_and_each_side_has_its_baseline():
    from ganforge.config import load_config

    for name, (preset, steps, sets) in cq.VARIANTS.items():
        cfg = load_config(preset, [*sets, "data.spec=folder:/nowhere", *([f"train.steps={steps}"] if steps else [])])
        assert cfg.model.channels == 3 and cfg.model.image_size in cq.BASELINES, name
        assert cq.side(cq.BASELINES[cfg.model.image_size]) == cfg.model.image_size, name


def test_a_64_px_table_is_its_own_block_against_its_own_baseline():
    md = cq.render([_row("dcgan-small64", 200.0), _row("dcgan-small64-colour", 150.0)],
                   {"cpu": "c", "logical_cores": 2, "torch": "x"}, "cmd", size=64)
    assert md.startswith("<!-- bench:colour64:start -->") and "vs dcgan-small64" in md
    assert "| dcgan-small64-colour | 1,000 | 100 | 150.0 | -25% |" in md
    assert cq.block_name(2.0, 64) == "colour64-x2"


def test_the_64_px_colour_variant_is_the_colour_presets_recipe_on_the_64_px_nets():
    from ganforge.config import load_config

    preset, steps, sets = cq.VARIANTS["dcgan-small64-colour"]
    ours = load_config(preset, [*sets, f"train.steps={steps}"])
    colour = load_config("dcgan-small-colour", [f"train.steps={steps}"])
    assert ours.train.model_dump() == colour.train.model_dump()
    assert ours.model.model_dump() == load_config("dcgan-small64").model.model_dump()


def test_variants_of_two_sides_are_refused_before_any_training(tmp_path):
    res = CliRunner().invoke(app, ["bench", "colour", "--variants", "dcgan-small,dcgan-small64",
                                   "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "dcgan-small64 64 px" in res.output and not (tmp_path / "r").exists()


def test_an_unknown_variant_is_refused_in_one_line(tmp_path):
    res = CliRunner().invoke(app, ["bench", "colour", "--variants", "biggan", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "biggan" in res.output and not (tmp_path / "r").exists()


def test_a_scaled_budget_multiplies_every_variants_steps_and_keeps_its_own_runs_and_table(tmp_path):
    from ganforge.config import load_config

    assert cq.budget(cq.VARIANTS["dcgan-small"], 10 / 3) == round(load_config("dcgan-small").train.steps * 10 / 3)
    assert cq.budget(cq.VARIANTS["r3gan-small"], 2) == 2 * cq.VARIANTS["r3gan-small"][1]
    assert cq.run_folder(tmp_path, "r3gan-small", 0, 1.0) == tmp_path / "r3gan-small-s0"
    assert cq.run_folder(tmp_path, "r3gan-small", 0, 3.3) == tmp_path / "r3gan-small-s0-x3.3"
    md = cq.render([_row("dcgan-small", 100.0)], {"cpu": "c", "logical_cores": 2, "torch": "x"}, "cmd", scale=3.3)
    assert md.startswith("<!-- bench:colour-x3.3:start -->") and md.endswith("<!-- bench:colour-x3.3:end -->")


def test_the_colour_preset_is_the_measured_variant():
    """``dcgan-small-colour`` ships the recipe measured as ``dcgan-small-colour-lazy16 --scale 1.069`` (3,100 steps)
    and, but for the penalties' interval and the steps, as ``rpgan-no-ada-adam0``: they must not drift apart."""
    from ganforge.config import load_config

    spec = cq.VARIANTS["dcgan-small-colour-lazy16"]
    assert cq.budget(spec, 1.069) == 3100
    measured = load_config(spec[0], [*spec[2], "train.steps=3100"])
    preset, steps, overrides = cq.VARIANTS["rpgan-no-ada-adam0"]
    every4 = load_config(preset, [*overrides, "train.steps=3100", "train.r1_every=16"])
    shipped = load_config("dcgan-small-colour")
    assert shipped.train.model_dump() == measured.train.model_dump() == every4.train.model_dump()
    assert shipped.model.model_dump() == every4.model.model_dump()


def test_the_64_px_colour_preset_is_the_variant_measured_at_dcgan_small64s_cpu_time():
    """``dcgan-small64-colour`` ships ``--variants dcgan-small64-colour --scale 1.7647``: the budget at which
    ``dcgan-small64`` runs its own 3,000 steps (docs/BENCHMARKS.md, 64 px)."""
    from ganforge.config import load_config

    assert cq.budget(cq.VARIANTS["dcgan-small64"], 1.7647) == load_config("dcgan-small64").train.steps == 3000
    preset, steps, sets = cq.VARIANTS["dcgan-small64-colour"]
    measured = load_config(preset, [*sets, f"train.steps={cq.budget((preset, steps, sets), 1.7647)}"])
    shipped = load_config("dcgan-small64-colour")
    assert shipped.train.model_dump() == measured.train.model_dump() and shipped.train.steps == 2735
    assert shipped.model.model_dump() == measured.model.model_dump()
