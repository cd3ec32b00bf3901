"""Vocabulary surgery: grow (new SID tokens), shrink (drop sharding padding) and pad-size arithmetic.

Growing appends rows to the embedding ``[V, H]`` and, when untied, columns to the lm_head kernel
``[H, V]``. Two inits for the new rows:

* ``"mean"`` — transformers' *mean resizing* (the default of `resize_token_embeddings`, used by the
  upstream MiniOneRec run): new rows ~ N(mu, 1e-9 * Sigma) with mu / Sigma the mean / covariance of
  the old rows. We use the **diagonal** of Sigma (per-dimension variance) instead of the full
  ``H x H`` covariance: with transformers' 1e-9 scale the sample is the mean up to ~3e-5 standard
  deviations either way, and the diagonal avoids an ``H^3`` Cholesky of a 151k-row matrix.
* ``"normal"`` — N(0, 0.02), the JAX-port (MLLM-JAX) behaviour.

Shrinking slices the first `new_size` rows. Old rows are never modified.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from sidcore.errors import ConfigError
from sidcore.model.modules import Qwen2ForCausalLM

__all__ = ["resize_vocab", "padded_vocab_size", "new_rows", "MEAN_RESIZE_EPS"]

#: transformers' covariance scale in `_init_added_embeddings_weights_with_mean`.
MEAN_RESIZE_EPS = 1e-9


def padded_vocab_size(n: int, multiple: int) -> int:
    """Round `n` up to a multiple of `multiple` (``multiple <= 1``: unchanged)."""
    if multiple <= 1:
        return n
    return -(-n // multiple) * multiple


def new_rows(old: jax.Array, added: int, *, init: Literal["mean", "normal"], key: jax.Array) -> jax.Array:
    """`added` new rows ``[added, H]`` for a table ``old [V, H]`` (float32 statistics, old dtype out)."""
    H = old.shape[1]
    noise = jax.random.normal(key, (added, H), dtype=jnp.float32)  # [added, H]
    if init == "normal":
        rows = 0.02 * noise
    elif init == "mean":
        o = old.astype(jnp.float32)
        mean = jnp.mean(o, axis=0)  # [H]
        var = jnp.mean(jnp.square(o - mean), axis=0)  # [H], diagonal of the (biased) covariance
        rows = mean + jnp.sqrt(MEAN_RESIZE_EPS * var) * noise
    else:
        raise ConfigError(f"resize_vocab: init must be 'mean' or 'normal', got {init!r}")
    return rows.astype(old.dtype)


def resize_vocab(model: Qwen2ForCausalLM, new_size: int, *, init: Literal["mean", "normal"] = "mean",
                 rng_seed: int = 0) -> Qwen2ForCausalLM:
    """Resize the vocabulary of `model` in place (and return it).

    Args:
        model: the model; ``model.cfg.vocab_size`` is updated too.
        new_size: target number of rows.
        init: init of added rows (module docstring).
        rng_seed: seed of the added rows (embedding and lm_head use different sub-keys).

    Returns:
        The same model object.
    """
    if new_size <= 0:
        raise ConfigError(f"resize_vocab: new_size must be > 0, got {new_size}")
    emb_mod = model.model.embed_tokens
    old = emb_mod.embedding[...]  # [V, H]
    V = old.shape[0]
    if new_size == V:
        return model
    k_emb, k_head = jax.random.split(jax.random.PRNGKey(rng_seed))
    if new_size < V:
        emb_mod.embedding = nnx.Param(old[:new_size])
    else:
        added = new_rows(old, new_size - V, init=init, key=k_emb)  # [new - V, H]
        emb_mod.embedding = nnx.Param(jnp.concatenate([old, added], axis=0))
    emb_mod.num_embeddings = new_size
    if model.lm_head is not None:
        kernel = model.lm_head.kernel[...]  # [H, V]
        if new_size < V:
            new_kernel = kernel[:, :new_size]
        else:
            cols = new_rows(kernel.T, new_size - V, init=init, key=k_head).T  # [H, added]
            new_kernel = jnp.concatenate([kernel, cols], axis=1)
        model.lm_head.kernel = nnx.Param(new_kernel)
        model.lm_head.out_features = new_size
    model.cfg = model.cfg.replace(vocab_size=new_size)
    return model
