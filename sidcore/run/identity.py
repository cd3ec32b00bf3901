"""Run identity: the settings that decide a training trajectory, recorded in every checkpoint.

A rerun resumes its own checkpoint only when this fingerprint is equal (`sidcore.train.
checkpointing.check_same_run`); otherwise it stops before writing anything and names each
differing key. What is in it, and why (docs/reliability.md, "Run identity"):

- the stage (``sft`` / ``rl``), ``seed``, ``base_model``, ``train.train_from_scratch`` and
  ``train.resume_from_checkpoint`` (the start weights);
- every ``model.*`` key and the parameter / compute dtypes (``jax.param_dtype``, ``jax.compute_dtype``);
- the training data: every ``data.*`` option that shapes training examples, and the sha256 of the
  files they are read from (train CSV, SID index, info file, item metadata, and the test CSV when
  ``data.train_test_histories`` reads it) instead of their paths, so a moved checkout still
  resumes and an edited file does not;
- SFT: ``tasks.*``, ``optimizer.*`` and every ``train.*`` key of the step, batch and schedule;
  RL: every ``rl.*`` key of rollouts, rewards, loss, optimizer and schedule (RL builds its own
  optimizer from the ``rl`` section).

Left out on purpose (they do not change the weights a step produces): ``eval.*``, ``metrics``,
``decoder``, ``wandb.*``, ``launcher``, ``store``, ``output_dir``, ``checkpoint_uri``,
``jax.mesh_shape`` (a checkpoint restores onto another mesh), ``jax.distributed``,
``jax.compile_cache``, ``jax.max_cache_length``, and logging / eval cadence / checkpoint cadence /
early-stopping keys.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sidcore.config import loading
from sidcore.config.schema import RunConfig

_TOP = ("seed", "base_model")
_JAX = ("jax.param_dtype", "jax.compute_dtype")
_DATA_FILES = ("train_file", "sid_index_path", "info_file", "item_meta_path")
_DATA_NOT_TRAJECTORY = {"data_dir", "category", "eval_file", "test_file", "eval_max_len", "sample_eval",
                        "sample_test", *_DATA_FILES}
_TRAIN_NOT_TRAJECTORY = {"logging_steps", "eval_steps", "save_steps", "save_total_limit", "save_last", "save_best",
                         "save_best_metric", "early_stopping_patience", "resume_fallback",
                         "per_device_eval_batch_size"}
_TRAIN_RL = ("train.resume_from_checkpoint", "train.train_from_scratch")
_RL_NOT_TRAJECTORY = {"logging_steps", "save_steps", "save_total_limit", "eval_steps", "eval_max_prompts"}


def file_digest(path: str | None) -> str | None:
    """``sha256:<hex>`` of a file's bytes (None when unset or absent)."""
    if not path or not Path(path).is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def stage_of(cfg: RunConfig) -> str:
    return "rl" if cfg.run_mode == "rl" else "sft"


def run_settings(cfg: RunConfig) -> dict[str, Any]:
    """Flat ``{key: value}`` of everything that decides this run's training trajectory."""
    flat = loading.flatten(loading.to_dict(cfg))
    stage = stage_of(cfg)
    out: dict[str, Any] = {"stage": stage}
    for key, val in flat.items():
        section, _, leaf = key.partition(".")
        leaf_root = leaf.split(".")[0]
        keep = (key in _TOP or key in _JAX or section == "model"
                or (section == "data" and leaf_root not in _DATA_NOT_TRAJECTORY))
        if stage == "sft":
            keep = keep or section in ("tasks", "optimizer") or (
                section == "train" and leaf_root not in _TRAIN_NOT_TRAJECTORY)
        else:
            keep = keep or key in _TRAIN_RL or (section == "rl" and leaf_root not in _RL_NOT_TRAJECTORY)
        if keep:
            out[key] = val
    files = list(_DATA_FILES) + (["test_file"] if cfg.data.train_test_histories else [])
    for name in files:
        out[f"data.{name}#content"] = file_digest(getattr(cfg.data, name))
    return out
