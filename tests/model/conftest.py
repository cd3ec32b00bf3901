"""Shared helpers for the model tests: tiny configs and parameter randomisation."""

from __future__ import annotations

import jax
import pytest
from flax import nnx

from sidcore.model import Qwen2Config, Qwen2ForCausalLM


def randomize(model: Qwen2ForCausalLM, seed: int, scale: float = 0.05) -> Qwen2ForCausalLM:
    """Add N(0, scale) noise to every parameter so biases/norm scales are non-trivial."""
    state = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    new = [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    nnx.update(model, jax.tree.unflatten(treedef, new))
    return model


FAMILIES = ("qwen2", "qwen3")


def tiny_config(family: str = "qwen2", **overrides) -> Qwen2Config:
    """`Qwen2Config.tiny` (qwen2) or `tiny_qwen3` (q/k norms, no bias, head_dim 32 != 64 / 4)."""
    make = {"qwen2": Qwen2Config.tiny, "qwen3": Qwen2Config.tiny_qwen3}[family]
    return make(**overrides)


def tiny_model(*, tied: bool = True, seed: int = 0, family: str = "qwen2", **overrides) -> Qwen2ForCausalLM:
    cfg = tiny_config(family, vocab_size=128, tie_word_embeddings=tied, **overrides)
    return randomize(Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(seed)), seed + 1)


@pytest.fixture
def make_tiny():
    return tiny_model


@pytest.fixture
def randomize_params():
    return randomize
