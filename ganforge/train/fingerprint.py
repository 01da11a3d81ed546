"""What a checkpoint was trained on, so that resume refuses a changed config or dataset (unless --force).

The config fingerprint leaves out what may change between sessions of one run (budget, device, logging). The
data fingerprint hashes the dataset's size and content: the whole tensor for in-memory sets, file names and
sizes for folders, the index (which holds every shard's SHA-256) for prepared shards.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from ganforge.config import ADA_KEYS, RUN_KEYS, RunConfig, family_train_keys

MAY_CHANGE = {"train": {"epochs", "steps", "time_limit", "device", "deterministic", "threads", "log_every",
                        "checkpoint_every", "keep_checkpoints", "sample_every", "min_interval_steps", "compile",
                        "cuda_graph", "tensorboard", "dist_timeout", "batch_per_device"},
              "data": {"num_workers", "root", "download"}}


def config_view(cfg: RunConfig) -> dict[str, Any]:
    d = cfg.model_dump(mode="json")
    for section, keys in MAY_CHANGE.items():
        for k in keys:
            d.get(section, {}).pop(k, None)
    read = set(RUN_KEYS) | set(family_train_keys(cfg.model.family))
    if cfg.train.augment != "ada":  # nor can ADA's keys while it is off (runs saved them with ADA off, too)
        read -= set(ADA_KEYS)
    for k in [k for k in d.get("train", {}) if k not in read]:  # keys the family never reads cannot change its run
        d["train"].pop(k)
    d.pop("eval", None)
    d.pop("description", None)
    return d


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys: {'train': {'lr_g': 1}} -> {'train.lr_g': 1}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(old: dict, new: dict) -> list[str]:
    a, b = flatten(old), flatten(new)
    # keys a checkpoint lacks were added to ganforge after it was written: they held their defaults then; keys the
    # current schema lacks were dropped from ganforge (0.1's keys that a family never read), so nothing can differ
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a) if k in b and a.get(k) != b.get(k)]


def data_fingerprint(dataset) -> str:
    h = hashlib.sha256()
    h.update(f"{dataset.name}|{len(dataset)}|{getattr(dataset, 'sample_shape', '')}".encode())
    tensor = getattr(dataset, "tensor", None)
    if getattr(dataset, "index_sha256", None):  # a prepared set is known by its index (shards' hashes, offsets)
        h.update(dataset.index_sha256.encode())
    elif tensor is not None and not getattr(dataset, "paths", None):  # a folder is known by its files, cached or not
        h.update(tensor.contiguous().numpy().tobytes())
        if getattr(dataset, "labels", None) is not None:
            h.update(dataset.labels.numpy().tobytes())
    else:
        for p in getattr(dataset, "paths", []):
            try:
                size = os.path.getsize(p)
            except OSError:
                size = -1
            h.update(f"{p}|{size}\n".encode())
    return h.hexdigest()


def fingerprint(cfg: RunConfig, dataset) -> dict[str, Any]:
    return {"config": config_view(cfg), "data": data_fingerprint(dataset), "data_name": dataset.name,
            "data_len": len(dataset)}


def mismatch(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between a checkpoint's fingerprint and the current run's (empty if none)."""
    diffs = config_differences(saved.get("config", {}), current["config"])
    if saved.get("data") != current["data"]:
        diffs.append(f"dataset: {saved.get('data_name')} ({saved.get('data_len')} items) -> "
                     f"{current['data_name']} ({current['data_len']} items), content differs")
    return diffs


def stable_json(d: Any) -> str:
    return json.dumps(d, sort_keys=True)
