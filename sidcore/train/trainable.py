"""``train.trainable``: which parameters an optimizer step may change.

``all`` (default) trains everything. ``sid_rows`` is MiniOneRec's ``freeze_LLM``: only the SID
token rows of the input embedding (and of an untied LM head) learn; every other parameter, and
every other row of those two matrices, stays bitwise equal. It wraps the run's optax transform:
gradients are masked before it (so clipping and the moments see the trainable part only) and its
updates after it (so weight decay cannot move a frozen value). Optimizer state is still allocated
for every parameter (the wrapped transform is unchanged), so memory is not saved.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sidcore.errors import ConfigError

EMBED_PATH = ("model", "embed_tokens", "embedding")  # [V, H]
HEAD_PATH = ("lm_head", "kernel")  # [H, V]


def _key_path(path: Sequence[Any]) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def sid_rows_mask(params: Any, sid_ids: Sequence[int]) -> Any:
    """A mask tree matching `params`: the SID rows of the embedding ``[V, 1]`` and of the LM head
    ``[1, V]`` are True, every other leaf is a scalar False (masks broadcast against updates)."""
    if not len(sid_ids):
        raise ConfigError("train.trainable=sid_rows: the tokenizer has no SID tokens to train")
    found: list[tuple[str, ...]] = []

    def leaf_mask(path: Any, x: Any) -> Any:
        key = _key_path(path)
        if key in (EMBED_PATH, HEAD_PATH):
            found.append(key)
            axis = 0 if key == EMBED_PATH else 1
            rows = np.zeros((x.shape[axis],), bool)
            rows[np.asarray(sid_ids)] = True
            return jnp.asarray(rows[:, None] if axis == 0 else rows[None, :])
        return jnp.zeros((), bool)

    mask = jax.tree_util.tree_map_with_path(leaf_mask, params)
    if EMBED_PATH not in found:
        raise ConfigError("train.trainable=sid_rows: the model has no input embedding at "
                          f"{'/'.join(EMBED_PATH)}")
    return mask


def masked_transform(tx: optax.GradientTransformation, mask: Any) -> optax.GradientTransformation:
    """`tx` restricted to the True entries of `mask` (gradients in, updates out; exact zeros elsewhere)."""

    def keep(tree: Any) -> Any:
        return jax.tree.map(lambda u, m: jnp.where(m, u, jnp.zeros_like(u)), tree, mask)

    def update(grads: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        updates, state = tx.update(keep(grads), state, params)
        return keep(updates), state

    return optax.GradientTransformation(tx.init, update)


def apply_trainable(mode: str, tx: optax.GradientTransformation, params: Any,
                    sid_ids: Sequence[int]) -> optax.GradientTransformation:
    """The run's transform for ``train.trainable`` (``all``: `tx` itself)."""
    if mode == "all":
        return tx
    if mode == "sid_rows":
        return masked_transform(tx, sid_rows_mask(params, sid_ids))
    raise ConfigError(f"train.trainable: unknown mode {mode!r} (all, sid_rows)")
