"""Params as a pure dict <-> the NNX module, inside ``jit``: the one bridge train, eval and RL share."""

from __future__ import annotations

from typing import Any, Callable

import jax
from flax import nnx

Params = dict[str, Any]


def make_merge(graphdef: Any, state_template: Any) -> Callable[[Params], Any]:
    """Return ``merge(params_pure_dict) -> model`` usable inside jit (``nnx.split`` of the model
    gives `graphdef` and `state_template`; the template is copied, never mutated)."""

    def merge(params: Params) -> Any:
        state = jax.tree.map(lambda v: v, state_template)
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state)

    return merge


def split_params(model: Any) -> tuple[Any, Any, Params]:
    """``(graphdef, state template, params pure dict)`` of an NNX model."""
    graphdef, state = nnx.split(model)
    return graphdef, jax.tree.map(lambda v: v, state), nnx.to_pure_dict(state)
