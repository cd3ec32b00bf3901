"""Train-state <-> checkpoint-tree conversion and restore checks.

A checkpoint tree is a pure dict of numpy arrays: ``{"params": {"model/layers/0/...": arr},
"opt_state": <flax state dict of the optax state>}``; its metadata records the step, the data
cursor, the best metric so far and the model shape, so a checkpoint from another model shape or
vocabulary is refused with a one-line error instead of a shape crash.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from flax import serialization

from sidcore.errors import CheckpointError
from sidcore.model.hf_params import flatten_params, unflatten_params
from sidcore.model.sharding import to_host as host


def to_tree(params: Any, opt_state: Any | None) -> dict[str, Any]:
    tree: dict[str, Any] = {"params": flatten_params(host(params))}
    if opt_state is not None:
        tree["opt_state"] = serialization.to_state_dict(host(opt_state))
    return tree


def shape_signature(params: Mapping[str, Any]) -> dict[str, list[int]]:
    return {k: list(np.shape(v)) for k, v in flatten_params(params).items()}


def check_params(flat: Mapping[str, Any], expected: Mapping[str, list[int]], source: str) -> None:
    """Refuse a checkpoint whose parameter names/shapes differ from the model's."""
    missing = sorted(set(expected) - set(flat))
    if missing:
        raise CheckpointError(f"{source}: checkpoint lacks parameter {missing[0]} (different model?)")
    extra = sorted(set(flat) - set(expected))
    if extra:
        raise CheckpointError(f"{source}: checkpoint has unexpected parameter {extra[0]} (different model?)")
    for k, shape in expected.items():
        got = list(np.shape(flat[k]))
        if got != list(shape):
            vocab_axis = 0 if "embed" in k else 1 if "lm_head" in k else None
            vocab_only = vocab_axis is not None and all(
                a == b for i, (a, b) in enumerate(zip(got, shape)) if i != vocab_axis)
            what = "vocabulary" if vocab_only else "model shape"
            raise CheckpointError(f"{source}: {k} has shape {got}, model expects {list(shape)} (different {what})")


def params_from_tree(tree: Mapping[str, Any], expected: Mapping[str, list[int]], source: str) -> dict[str, Any]:
    if "params" not in tree:
        raise CheckpointError(f"{source}: checkpoint has no 'params'")
    flat = dict(tree["params"])
    check_params(flat, expected, source)
    return unflatten_params(flat)


def opt_state_from_tree(tree: Mapping[str, Any], template: Any, source: str) -> Any:
    if "opt_state" not in tree:
        raise CheckpointError(f"{source}: checkpoint has no optimizer state (cannot resume training)")
    try:
        return serialization.from_state_dict(template, tree["opt_state"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{source}: optimizer state does not fit the configured optimizer ({exc})") from None
