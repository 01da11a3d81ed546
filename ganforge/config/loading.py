"""Presets, ``--set`` overrides and validation: a config from a preset name or a YAML file, checked before any
model is built, every bad key reported with its full path in one line."""
from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import TypeAdapter, ValidationError

from ganforge.config.schema import (ADA_KEYS, RUN_KEYS, smooths, SWITCHED_OFF, RunConfig, TrainConfig, _family_configs,
                                    family_keys, family_train_keys)
from ganforge.errors import UserError


def _preset_dir():
    return resources.files("ganforge") / "presets"


def preset_names() -> list[str]:
    return sorted(p.name[: -len(".yaml")] for p in _preset_dir().iterdir() if p.name.endswith(".yaml"))


def parse_yaml(text: str, source: str, fix: str) -> dict[str, Any]:
    """A YAML mapping, or one line naming the file, where the syntax broke, and ``fix``."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise UserError(f"{source} is not valid YAML ({problem}{where}): {fix}") from None
    if not isinstance(data, dict):
        raise UserError(f"{source} is not a YAML mapping of sections (model:, data:, train:): {fix}")
    return data


def read_yaml(path: Path, fix: str) -> dict[str, Any]:
    """``parse_yaml`` of a file, which may also be unreadable or not text."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file: {fix}") from None
    except OSError as exc:
        raise UserError(f"cannot read {path} ({exc.strerror}): {fix}") from None
    return parse_yaml(text, str(path), fix)


def preset_dict(name: str) -> dict[str, Any]:
    """The raw YAML of a shipped preset, or of a YAML file when ``name`` is a path."""
    path = Path(name)
    if name.endswith((".yaml", ".yml")):
        if not path.is_file():
            raise UserError(f"config file {name} does not exist"
                            + (" (it is a folder)" if path.is_dir() else "")
                            + ": check the path, or name a preset (see 'ganforge presets')")
        return read_yaml(path, "fix the file ('ganforge presets --show NAME' prints a valid config)")
    else:
        ref = _preset_dir() / f"{name}.yaml"
        if not ref.is_file():
            raise UserError(
                f"unknown preset {name!r}: choose one of {', '.join(preset_names())} (see 'ganforge presets') "
                "or pass a path to a .yaml config"
            )
        return parse_yaml(ref.read_text(), f"preset {name!r}", "reinstall ganforge")


def parse_override(item: str) -> tuple[list[str], Any]:
    """``train.lr_g=1e-4`` -> (["train", "lr_g"], 1e-4); the value is read as YAML (numbers, bools, null)."""
    if "=" not in item:
        raise UserError(f"bad --set {item!r}: write key.path=value, e.g. --set train.lr_g=1e-4")
    key, _, raw = item.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise UserError(f"bad --set {item!r}: the key {key!r} has an empty part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        try:
            value = float(value)  # YAML 1.1 reads 1e-4 as a string; people mean a number
        except ValueError:
            pass
    return parts, value


def set_path(data: dict[str, Any], parts: list[str], value: Any, item: str = "") -> None:
    """data[a][b][c] = value for parts [a, b, c], creating sections as needed (in place)."""
    node = data
    for i, p in enumerate(parts[:-1]):
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise UserError(f"bad --set {item or '.'.join(parts)!r}: {'.'.join(parts[: i + 1])} is not a section")
        node = nxt
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str], values: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """A copy of ``data`` with ``--set key.path=value`` strings and already-typed ``values`` applied.

    ``--set section.key=null`` on a key that cannot be null unsets it (its default applies); a switch turned off
    (``SWITCHED_OFF``, e.g. train.augment=none) drops the keys set for it that the overrides do not set themselves.
    """
    data = copy.deepcopy(data)
    changed: list[list[str]] = []
    for key, value in (values or {}).items():
        set_path(data, key.split("."), value)
        changed.append(key.split("."))
    for item in overrides:
        parts, value = parse_override(item)
        set_path(data, parts, value, item)
        changed.append(parts)
    for parts in changed:
        if _get_path(data, parts) is None and not _may_be_null(parts):
            _pop_path(data, parts)
    _drop_switched_off(data, {".".join(p) for p in changed})
    return data


def _get_path(data: dict[str, Any], parts: list[str]) -> Any:
    node: Any = data
    for p in parts:
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def _pop_path(data: dict[str, Any], parts: list[str]) -> None:
    node = _get_path(data, parts[:-1]) if len(parts) > 1 else data
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def _may_be_null(parts: list[str]) -> bool:
    """Whether None is a value of this key (``train.ada_p``: yes); unknown keys say yes, so validation names them."""
    section = RunConfig.model_fields.get(parts[0]) if len(parts) == 2 else None
    model = getattr(section, "annotation", None)
    fields = getattr(model, "model_fields", None)
    if not fields or parts[1] not in fields:
        return True
    try:
        TypeAdapter(fields[parts[1]].annotation).validate_python(None)
    except ValidationError:
        return False
    return True


def _drop_switched_off(data: dict[str, Any], changed: set[str]) -> None:
    for (section, switch), (on, keys) in SWITCHED_OFF.items():
        if f"{section}.{switch}" in changed and _get_path(data, [section, switch]) not in (None, on):
            for key in keys:
                if key not in changed:
                    _pop_path(data, key.split("."))


# keys of the one flat model config of ganforge 0.1, which every family accepted and most ignored
V1_MODEL_KEYS = ("family", "image_size", "channels", "z_dim", "z_dist", "g_width", "d_width", "g_input", "d_output",
                 "batch_norm", "bias", "dropout", "num_classes", "init_std", "point_dim", "pack")


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A config written by an older ganforge (run directories, checkpoints) in today's schema.

    0.1 had one flat model section and saved every key of it; the keys a family never read (``dropout`` for
    dcgan, ``num_classes`` for mlp...) are dropped. Before families declared their train keys, a run could hold
    a train key its family ignored (it trained as without it): dropped too. Until ada_kimg could be unset, every run saved ADA's keys,
    ADA on or off, and ``train.ada_kimg`` had a value (100): with ADA off they are dropped (they were never read),
    so an old run does not read as one that set ADA keys for nothing. Only for what ganforge itself wrote:
    presets and users' YAML files are validated as they are, so a misplaced key there is still an error.
    """
    model = data.get("model")
    if not isinstance(model, dict):
        return data
    family = str(model.get("family", "dcgan"))
    accepted = set(family_keys(family))
    if not accepted:
        return data
    inert = [k for k in model if k in V1_MODEL_KEYS and k not in accepted]
    train = data.get("train") if isinstance(data.get("train"), dict) else {}
    read = set(RUN_KEYS) | set(family_train_keys(family))
    unread = [k for k in train if k in TrainConfig.model_fields and k not in read]
    unread += [k for k in ADA_KEYS if k in train and k not in unread and train.get("augment", "none") != "ada"]
    if "real_label" in train and "real_label" not in unread and not smooths(str(train.get("loss", "bce"))):
        unread.append("real_label")  # saved before a loss without a real target refused it: it was never read
    if not inert and not unread:
        return data
    data = copy.deepcopy(data)
    for k in inert:
        data["model"].pop(k)
    for k in unread:
        data["train"].pop(k)
    return data


def _error_line(err: dict[str, Any]) -> str:
    loc = [str(x) for x in err["loc"]]
    if len(loc) >= 2 and loc[0] == "model" and family_keys(loc[1]):
        family, loc = loc[1], [loc[0], *loc[2:]]  # drop pydantic's union tag from the path
    else:
        family = None
    where = ".".join(loc) or "(top level)"
    msg = err["msg"]
    if err["type"] == "value_error" and (not loc or msg.startswith(f"Value error, {where}.")):
        return msg.removeprefix("Value error, ")  # a check across keys: its message names them
    if err["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; 'ganforge presets --show NAME' prints every key)"
        if family:
            msg = f"unknown key for family {family!r}, which accepts: {', '.join(family_keys(family))}"
    elif err["type"] == "union_tag_invalid":
        msg = (f"unknown family {err.get('ctx', {}).get('tag')!r}: choose one of "
               f"{', '.join(sorted(_known_families()))}")
    bad = err.get("input")
    shown = "" if err["type"] in ("extra_forbidden", "missing") or isinstance(bad, dict) else f" (got {bad!r})"
    return f"{where}: {msg}{shown}"


def _known_families() -> list[str]:
    return [cls.model_fields["family"].default for cls in _family_configs()]


def validate(data: dict[str, Any], source: str = "config", written_by_ganforge: bool = False) -> RunConfig:
    """Build a RunConfig, turning pydantic's report into one line per bad key, each with its full path.

    ``written_by_ganforge``: the config comes from a run directory or a checkpoint, and may be from an older
    version (see ``migrate``).
    """
    if written_by_ganforge:
        data = migrate(data)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_error_line(err) for err in exc.errors()]
        raise UserError(f"invalid {source}: " + "; ".join(lines)) from None


def load_config(preset: str, overrides: Optional[list[str]] = None, values: Optional[dict[str, Any]] = None) -> RunConfig:
    """Preset (name or YAML path) + typed ``values`` (from CLI flags) + ``--set`` overrides -> validated RunConfig."""
    data = preset_dict(preset)
    data = apply_overrides(data, list(overrides or []), values)
    return validate(data, source=f"config (preset {preset!r})")


def load_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a ganforge run directory: {path} is missing")
    data = read_yaml(path, "the run's config is damaged; every checkpoint keeps a copy (the 'config' entry of "
                           f"{Path(run_dir) / 'checkpoints' / '*' / 'state.json'}, JSON, which is valid YAML)")
    return validate(data, source=str(path), written_by_ganforge=True)


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def show_config(cfg: RunConfig) -> str:
    """``ganforge presets --show``: the config as YAML, its train section cut to the keys the family reads and the
    run's own, then those keys named in comments (any other train key is refused for this family)."""
    data = cfg.model_dump(mode="json")
    own = family_train_keys(cfg.model.family)
    data["train"] = {k: v for k, v in data["train"].items() if k in RUN_KEYS or k in own}
    return (yaml.safe_dump(data, sort_keys=False)
            + f"# train keys family {cfg.model.family!r} reads: {', '.join(own) or 'none'}\n"
            + f"# and the run's own, read for every family: {', '.join(RUN_KEYS)}\n"
            + "# any other train key is refused for this family\n")
