"""Config values that parse but would do nothing or something wrong (issue 19, item 5 and 9).

Each check runs when the config loads (``sid config validate``, ``sid run --dry-run``, ``sid tpu run``
locally) and raises a one-line `ConfigError` naming the key: a non-finite number, a
``train.save_best_metric`` no eval ever reports, a ``model.preset`` or ``model.overrides`` key the
model layer does not know, a ``data.eval_max_len`` no prefill bucket holds, an ``output_dir`` /
``checkpoint_uri`` that cannot be addressed. The model names are listed here because
``sidcore.config`` must not import the model layer (it imports jax); ``tests/unit/
test_reliability_inputs.py`` proves the lists equal `sidcore.model.config`'s.
"""

from __future__ import annotations

import math
import re
from typing import Any

import attrs

from sidcore.config import schema
from sidcore.errors import ConfigError
from sidcore.registry import suggest

#: `sidcore.model.config.PRESETS`, by name.
MODEL_PRESETS = ("tiny", "tiny_qwen3", "qwen2_5_0_5b", "qwen2_5_1_5b", "qwen2_5_7b", "qwen3_0_6b", "qwen3_1_7b",
                 "qwen3_8b")
#: `Qwen2Config` fields ``model.overrides`` may set, with the YAML types they take (``vocab_size`` is
#: the tokenizer's, never an override).
MODEL_OVERRIDES: dict[str, tuple[type, ...]] = {
    "hidden_size": (int,), "intermediate_size": (int,), "num_hidden_layers": (int,),
    "num_attention_heads": (int,), "num_key_value_heads": (int,), "head_dim": (int, type(None)),
    "rope_theta": (int, float), "rms_norm_eps": (int, float), "tie_word_embeddings": (bool,),
    "max_position_embeddings": (int,), "model_type": (str,),
}
_METRIC_RE = re.compile(r"^([a-z][a-z0-9_]*)@(\d+)$")


def check_values(cfg: schema.RunConfig, source: str) -> None:
    """Every single-key check of this module, in config order (the first failure is raised)."""
    check_locations(cfg, source)
    if not 0 <= cfg.seed < 2**32:  # numpy's RandomState (row sampling) takes nothing else
        raise ConfigError(f"{source}: seed: expected an integer in 0 .. 2**32-1, got {cfg.seed}")
    check_model(cfg, source)
    check_finite(cfg, source)
    check_eval_max_len(cfg, source)
    check_best_metric(cfg, source)


def check_locations(cfg: schema.RunConfig, source: str) -> None:
    """``output_dir`` set, and neither it nor ``checkpoint_uri`` holding ``#`` (the checkpoint-name
    separator of every run address: ``RUN#best``)."""
    if not cfg.output_dir.strip():
        raise ConfigError(f"{source}: output_dir: empty; give the run's folder (e.g. output_dir=runs/my_run)")
    for key in ("output_dir", "checkpoint_uri"):
        value = getattr(cfg, key)
        if value and "#" in value:
            raise ConfigError(f"{source}: {key}: {value!r} contains '#', which separates a checkpoint name in "
                              f"run addresses (RUN#best); choose a path without '#'")


def check_model(cfg: schema.RunConfig, source: str) -> None:
    """``model.preset`` a known preset; ``model.overrides`` known architecture keys of the right type."""
    m = cfg.model
    if m.preset is not None and m.preset not in MODEL_PRESETS:
        raise ConfigError(f"{source}: model.preset: unknown preset {m.preset!r}"
                          f"{suggest(m.preset, list(MODEL_PRESETS)) or ''}; available: {', '.join(MODEL_PRESETS)}")
    for key, value in m.overrides.items():
        if key == "vocab_size":
            raise ConfigError(f"{source}: model.overrides.vocab_size: set by the tokenizer (with the SID tokens), "
                              "not an override; drop it")
        if key not in MODEL_OVERRIDES:
            raise ConfigError(f"{source}: model.overrides.{key}: unknown key{suggest(str(key), list(MODEL_OVERRIDES))}"
                              f"; valid keys: {', '.join(MODEL_OVERRIDES)}")
        types = MODEL_OVERRIDES[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ConfigError(f"{source}: model.overrides.{key}: expected {want}, got {value!r}")


def _floats(obj: Any, path: str) -> list[tuple[str, float]]:
    """(dotted key, value) of every float in an attrs tree (component options included)."""
    if isinstance(obj, schema.ComponentConfig):
        return _floats(obj.options, path)
    if attrs.has(type(obj)):
        out: list[tuple[str, float]] = []
        for f in attrs.fields(type(obj)):
            out += _floats(getattr(obj, f.name), f"{path}.{f.name}" if path else f.name)
        return out
    if isinstance(obj, (list, tuple)):
        return [kv for i, x in enumerate(obj) for kv in _floats(x, f"{path}[{i}]")]
    if isinstance(obj, dict):
        return [kv for k, x in obj.items() for kv in _floats(x, f"{path}.{k}")]
    return [(path, obj)] if isinstance(obj, float) else []


def check_finite(cfg: schema.RunConfig, source: str) -> None:
    """No NaN or infinity anywhere (``train.learning_rate=.inf`` passed every ``> 0`` check)."""
    for key, value in _floats(cfg, ""):
        if not math.isfinite(value):
            raise ConfigError(f"{source}: {key}: expected a finite number, got {value}")


def check_eval_max_len(cfg: schema.RunConfig, source: str) -> None:
    """The largest ``eval.prefill_buckets`` entry holds ``data.eval_max_len`` (what its help promises)."""
    largest = max(cfg.eval.prefill_buckets)
    if cfg.data.eval_max_len > largest:
        raise ConfigError(f"{source}: data.eval_max_len: {cfg.data.eval_max_len} exceeds the largest "
                          f"eval.prefill_buckets entry ({largest}); add a bucket >= {cfg.data.eval_max_len} "
                          "or lower data.eval_max_len")


def best_metric_choices(cfg: schema.RunConfig) -> list[str]:
    """``eval_loss`` plus ``<metric>@K`` for every selected top-K metric and K of ``eval.topk`` it reports."""
    out = ["eval_loss"]
    for m in cfg.metrics:
        ks = getattr(m.options, "topk", None)
        if ks is not None:
            out += [f"{m.name}@{k}" for k in cfg.eval.topk if k in ks and k <= cfg.eval.num_beams]
    return out


def check_best_metric(cfg: schema.RunConfig, source: str) -> None:
    """``train.save_best_metric`` is a value some evaluation of this run reports."""
    metric = cfg.train.save_best_metric
    choices = best_metric_choices(cfg)
    if metric not in choices:
        hint = ""
        if _METRIC_RE.match(metric) is None and metric != "eval_loss":
            hint = " (expected eval_loss or <metric>@K)"
        raise ConfigError(f"{source}: train.save_best_metric: {metric!r} is never reported{hint}; choose one of "
                          f"{', '.join(choices)} (K from eval.topk, metrics from the metrics list)")
    t = cfg.train
    uses = t.save_best or t.early_stopping_patience or cfg.eval.use_best_checkpoint
    if metric != "eval_loss" and uses and t.eval_steps >= 0 and (cfg.run_mode != "train_eval"
                                                                  or not cfg.eval.enabled):
        raise ConfigError(f"{source}: train.save_best_metric={metric} needs the decoding eval during training "
                          f"(run_mode=train_eval with eval.enabled=true; got run_mode={cfg.run_mode}, "
                          f"eval.enabled={str(cfg.eval.enabled).lower()}); use eval_loss")
