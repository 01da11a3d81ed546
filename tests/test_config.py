"""Config validation: presets load, typos and wrong types fail with the key's path, --set works."""
from __future__ import annotations

import pytest

from ganforge.config import RunConfig, apply_overrides, load_config, parse_override, preset_dict, preset_names, validate
from ganforge.errors import UserError

SEED_PRESETS = {"mnist-mlp", "dcgan-mnist", "dcgan-svhn", "dcgan-celeba", "dcgan-cifar10", "cdcgan-mnist"}


def test_every_seed_system_has_a_preset():
    assert SEED_PRESETS <= set(preset_names())


@pytest.mark.parametrize("name", preset_names())
def test_presets_validate_and_describe_themselves(name):
    cfg = load_config(name)
    assert isinstance(cfg, RunConfig)
    assert cfg.name == name
    assert preset_dict(name).get("description"), "every preset needs a one-line description for 'ganforge presets'"


def test_seed_hyperparameters_are_kept():
    mlp = load_config("mnist-mlp")
    assert (mlp.train.lr_g, mlp.train.real_label, mlp.model.z_dim, mlp.model.z_dist, mlp.model.dropout) == (0.002, 0.9, 100, "uniform", 0.3)
    assert mlp.train.n_fixed == 16
    svhn = load_config("dcgan-svhn")
    assert (svhn.model.g_width, svhn.model.image_size, svhn.model.channels, svhn.train.batch_size) == (32, 32, 3, 128)
    celeba = load_config("dcgan-celeba")
    assert (celeba.model.g_width, celeba.model.d_width, celeba.model.image_size, celeba.train.beta1, celeba.train.lr_d) == (64, 64, 64, 0.5, 2e-4)
    cd = load_config("cdcgan-mnist")
    assert (cd.model.family, cd.model.image_size, cd.model.g_width) == ("cdcgan", 32, 128)


def test_unknown_key_is_rejected_with_its_path():
    with pytest.raises(UserError, match=r"train\.lr_gg: unknown key"):
        load_config("dcgan-mnist", ["train.lr_gg=0.1"])


def test_wrong_type_is_rejected_with_its_path_and_value():
    with pytest.raises(UserError, match=r"train\.batch_size.*'many'"):
        load_config("dcgan-mnist", ["train.batch_size=many"])


@pytest.mark.parametrize("size", [8, 24, 30, 512])
def test_image_size_must_be_power_of_two_in_range(size):
    with pytest.raises(UserError, match="image_size"):
        load_config("dcgan-mnist", [f"model.image_size={size}"])


@pytest.mark.parametrize("size", [16, 64, 128, 256])
def test_image_size_accepts_powers_of_two(size):
    assert load_config("dcgan-mnist", [f"model.image_size={size}"]).model.image_size == size


def test_set_parses_yaml_scalars():
    assert parse_override("train.lr_g=1e-4") == (["train", "lr_g"], 1e-4)
    assert parse_override("train.ema.enabled=false") == (["train", "ema", "enabled"], False)
    assert parse_override("train.steps=null") == (["train", "steps"], None)
    cfg = load_config("dcgan-mnist", ["train.ema.decay=0.99", "model.channels=3"])
    assert cfg.train.ema.decay == 0.99 and cfg.model.channels == 3


@pytest.mark.parametrize("bad", ["train.lr_g", "=3", "train..lr=1"])
def test_bad_set_syntax(bad):
    with pytest.raises(UserError, match="--set"):
        load_config("dcgan-mnist", [bad])


def test_set_into_a_scalar_is_rejected():
    with pytest.raises(UserError, match="not a section"):
        apply_overrides({"train": {"seed": 1}}, ["train.seed.x=1"])


def test_unknown_preset_names_the_choices():
    with pytest.raises(UserError, match="unknown preset 'nope'.*dcgan-mnist"):
        load_config("nope")


def test_preset_from_yaml_path(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("name: mine\nmodel: {family: dcgan, image_size: 16}\ntrain: {steps: 3, epochs: null}\n")
    cfg = load_config(str(p))
    assert cfg.name == "mine" and cfg.model.image_size == 16 and cfg.train.steps == 3


def test_budget_is_required():
    with pytest.raises(UserError, match="train.epochs or train.steps"):
        validate({"train": {"epochs": None, "steps": None}})


# a valid value other than the default for every train key a family may or may not read
NON_DEFAULT = {"loss": "lsgan", "optimizer": "rmsprop", "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.0, "beta2": 0.99,
               "real_label": 0.9, "d_steps": 2, "r1_gamma": 1.0, "r2_gamma": 1.0, "r1_every": 4, "gp_lambda": 1.0, "weight_clip": 0.1,
               "instance_noise": 0.1, "instance_noise_steps": 10, "g_objective": "feature_matching",
               "diffaugment": "color", "augment": "ada", "ada_pipe": "bg", "ada_target": 0.5, "ada_kimg": 5.0,
               "ada_p": 0.2, "ada_interval": 2, "unrolled_steps": 2, "reuse_fake": True}


def _family_names():
    from ganforge.families import all_families

    return sorted(all_families())


@pytest.mark.parametrize("family", _family_names())
def test_every_family_accepts_exactly_the_train_keys_it_reads(family):
    """Every family x every train key outside the run's own: set to a non-default value, it is accepted when the
    family declares it and refused, in one line naming the key and the family, when it does not."""
    from ganforge.config import RUN_KEYS, TrainConfig, family_train_keys

    assert set(NON_DEFAULT) == set(TrainConfig.model_fields) - set(RUN_KEYS), "a new train key: add it here"
    reads = set(family_train_keys(family))
    for key, value in NON_DEFAULT.items():
        train = {"steps": 10, key: value}
        if key.startswith("ada_") and "augment" in reads:
            train["augment"] = "ada"  # the ADA keys mean something only with ADA on
        data = {"model": {"family": family}, "train": train}
        if key in reads:
            assert getattr(validate(data).train, key) == value, (family, key)
        else:
            with pytest.raises(UserError) as err:
                validate(data)
            assert f"train.{key}" in str(err.value) and f"family {family!r} does not read" in str(err.value)
            assert "\n" not in str(err.value)


def test_every_train_key_is_read_by_the_loop_or_some_family():
    from ganforge.config import RUN_KEYS, TrainConfig
    from ganforge.families import all_families

    declared = {k for f in all_families().values() for k in f.train_keys}
    assert declared <= set(TrainConfig.model_fields), declared - set(TrainConfig.model_fields)
    assert set(TrainConfig.model_fields) - set(RUN_KEYS) <= declared


def test_turning_a_presets_ada_off_drops_its_ada_keys(tmp_path):
    """A preset that sets train.augment=ada with ADA's keys: --set train.augment=none turns all of it off (the
    keys of a feature the user turns off do not block it); a key the user sets himself with ADA off is still
    refused, saying how to unset it."""
    import yaml

    preset = preset_dict("dcgan-mnist")
    preset["train"].update(augment="ada", ada_kimg=10, ada_target=0.7, ada_pipe="bg", ada_interval=8)
    path = tmp_path / "ada.yaml"
    path.write_text(yaml.safe_dump(preset))
    assert load_config(str(path)).train.ada_kimg == 10
    cfg = load_config(str(path), ["train.augment=none"])
    assert cfg.train.augment == "none" and cfg.train.ada_kimg is None and cfg.train.ada_target == 0.6
    assert cfg.train.ada_pipe == "bgc" and cfg.train.ada_interval == 4
    with pytest.raises(UserError, match=r"train\.ada_kimg is set but ADA is off: .*--set train\.ada_kimg=null"):
        load_config(str(path), ["train.augment=none", "train.ada_kimg=5"])


def test_ada_kimg_is_unset_by_default_so_ps_speed_follows_the_run():
    """train.ada_kimg None: p's speed is set by the run's length (parts/ada.py); --set ...=null unsets a value."""
    assert RunConfig().train.ada_kimg is None
    assert load_config("dcgan-mnist", ["train.augment=ada", "train.ada_kimg=20", "train.ada_kimg=null"]).train.ada_kimg is None


def test_set_null_unsets_a_key_that_cannot_be_null():
    """--set train.ada_target=null brings the default back; on a key where null means something, it stays null."""
    assert load_config("dcgan-mnist", ["train.augment=ada", "train.ada_target=null"]).train.ada_target == 0.6
    assert load_config("dcgan-mnist", ["train.diffaugment=null"]).train.diffaugment == ""
    assert load_config("dcgan-mnist", ["train.steps=null", "train.epochs=3"]).train.steps is None
    assert load_config("dcgan-mnist", ["train.augment=ada", "train.ada_p=0.3", "train.ada_p=null"]).train.ada_p is None


@pytest.mark.parametrize("loss", ["rpgan", "hinge", "wgan-gp"])
def test_label_smoothing_is_refused_where_the_loss_has_no_real_target(loss):
    """real_label 0.9 with a loss that has no real-label target trained as if unset: refused, naming the fix;
    a run saved before the refusal still loads, with the key dropped (it was never read)."""
    with pytest.raises(UserError, match=f"real_label=0.9.*loss={loss}.*real_label=null"):
        load_config("dcgan-mnist", [f"train.loss={loss}"])
    assert load_config("dcgan-mnist", [f"train.loss={loss}", "train.real_label=null"]).train.real_label == 1.0
    assert load_config("dcgan-mnist", ["train.loss=lsgan"]).train.real_label == 0.9
    saved = RunConfig.model_validate(preset_dict("dcgan-mnist")).model_dump(mode="json")
    saved["train"].update(loss=loss, real_label=0.9)
    assert validate(saved, written_by_ganforge=True).train.real_label == 1.0
    with pytest.raises(UserError, match="real_label"):
        validate(saved)


def test_a_run_saved_with_adas_old_default_and_ada_off_still_loads_and_resumes(tmp_path):
    """Runs used to save train.ada_kimg: 100.0 (the old default) with ADA off: migration drops ADA's keys there
    (never read), and a checkpoint fingerprinted with them does not block resume; with ADA on the value stays."""
    import yaml

    from ganforge.config import load_run_config
    from ganforge.train import fingerprint as fp

    old = {"name": "old", "model": {"family": "dcgan"},
           "train": {"steps": 5, "augment": "none", "ada_kimg": 100.0, "ada_target": 0.6, "ada_pipe": "bgc"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    cfg = load_run_config(tmp_path)
    assert cfg.train.augment == "none" and cfg.train.ada_kimg is None
    with pytest.raises(UserError, match=r"train\.ada_kimg is set but ADA is off"):
        validate(old)  # a user's own YAML is still checked strictly
    view = fp.config_view(cfg)
    saved = {"config": {**view, "train": {**view["train"], "ada_kimg": 100.0}}, "data": "x"}
    assert "ada_kimg" not in view["train"] and fp.mismatch(saved, {"config": view, "data": "x"}) == []
    old["train"]["augment"] = "ada"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    assert load_run_config(tmp_path).train.ada_kimg == 100.0  # an old ADA run keeps its speed when resumed


def test_a_run_written_with_a_train_key_its_family_ignored_still_loads_and_resumes(tmp_path):
    """Before families declared their train keys, a progan run could hold train.diffaugment (which it never read):
    its config.yaml still loads, without the key, and a checkpoint fingerprinted with it does not block resume."""
    import yaml

    from ganforge.config import load_run_config
    from ganforge.train import fingerprint as fp

    old = {"name": "old", "model": {"family": "progan", "image_size": 16}, "train": {"steps": 5, "epochs": None,
                                                                                     "diffaugment": "color"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    cfg = load_run_config(tmp_path)
    assert cfg.model.family == "progan" and cfg.train.diffaugment == ""
    with pytest.raises(UserError, match=r"train\.diffaugment: family 'progan' does not read it"):
        validate(old)  # a user's own YAML is still checked strictly
    view = fp.config_view(cfg)
    saved = {"config": {**view, "train": {**view["train"], "diffaugment": "color"}}, "data": "x"}
    assert "diffaugment" not in view["train"] and fp.mismatch(saved, {"config": view, "data": "x"}) == []
