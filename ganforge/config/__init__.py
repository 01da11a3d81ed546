"""Run configuration: the schema (``schema.py``: pydantic models, the train keys each family reads) and loading
(``loading.py``: presets, ``--set`` overrides, validation into one line per bad key).

Every knob of a run lives here, validated up front (``extra="forbid"`` everywhere), so that a typo in a preset or
in ``--set`` fails before any model is built, with the key's full path in the message.
"""
from __future__ import annotations

from ganforge.config.loading import (V1_MODEL_KEYS, apply_overrides, dump_config, load_config, load_run_config,
                                     migrate, parse_override, parse_yaml, preset_dict, preset_names, read_yaml,
                                     set_path, show_config, validate)
from ganforge.config.schema import (ADA_KEYS, DIFFAUGMENT_POLICIES, RUN_KEYS, SWITCHED_OFF, DataConfig, EmaConfig,
                                    EvalConfig, GuardConfig, ModelConfig, RunConfig, TrainConfig, family_keys,
                                    family_train_keys, model_config, unread_message, unread_train_keys)

__all__ = ["ADA_KEYS", "DIFFAUGMENT_POLICIES", "RUN_KEYS", "SWITCHED_OFF", "V1_MODEL_KEYS", "DataConfig", "EmaConfig",
           "EvalConfig", "GuardConfig", "ModelConfig", "RunConfig", "TrainConfig", "apply_overrides", "dump_config",
           "family_keys", "family_train_keys", "load_config", "load_run_config", "migrate", "model_config",
           "parse_override", "parse_yaml", "preset_dict", "preset_names", "read_yaml", "set_path", "show_config",
           "unread_message", "unread_train_keys", "validate"]
