"""Pieces shared by the built-in optimizers: the Muon/Adam parameter routing rule, dtype names, and a
wrapper that keeps each update in its gradient's dtype.

Routing rule (the same for `optax_muon` and `muon_local`): a leaf goes to **Muon** iff it is 2-D,
its path does not contain ``embed`` or ``lm_head`` (the token embedding and output head carry the
added SID rows and must stay on Adam), and, when ``max_dim`` is set, ``max(shape) <= max_dim``
(the reference's only rule, reference-spec §5.2). Everything else goes to the auxiliary Adam.
Paths are matched on ``keystr(path, simple=True, separator="/")``, lower-cased, so both pure dicts
(``model/embed_tokens/embedding``) and NNX ``State`` trees (``.../embedding/value``) route alike.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

MUON = "muon"
ADAM = "adam"
AUX_PATH_MARKERS = ("embed", "lm_head")

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def dtype_or_none(name: str | None) -> Any:
    """Map a config dtype name (``"float32"``, ``"bfloat16"`` or ``None``) to a jnp dtype or ``None``."""
    return None if name is None else _DTYPES[name]


def path_name(path: tuple[Any, ...]) -> str:
    """A ``/``-joined name for a pytree key path, e.g. ``model/layers/0/self_attn/q_proj/kernel``."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


def route_leaf(path: tuple[Any, ...], leaf: Any, *, max_dim: int | None) -> str:
    """Return ``"muon"`` or ``"adam"`` for one parameter leaf (see the module docstring)."""
    name = path_name(path).lower()
    if any(marker in name for marker in AUX_PATH_MARKERS):
        return ADAM
    shape = jnp.shape(leaf)
    if len(shape) != 2:
        return ADAM
    if max_dim is not None and max(shape) > max_dim:
        return ADAM
    return MUON


def param_labels(params: Any, *, max_dim: int | None) -> Any:
    """The tree of ``"muon"`` / ``"adam"`` labels for `params` (for ``optax.partition``)."""
    return jax.tree_util.tree_map_with_path(lambda p, x: route_leaf(p, x, max_dim=max_dim), params)


def labels_fn(max_dim: int | None) -> Callable[[Any], Any]:
    """``params -> labels`` with `max_dim` bound (what ``optax.partition`` wants)."""

    def fn(params: Any) -> Any:
        return param_labels(params, max_dim=max_dim)

    return fn


def keep_update_dtypes(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """Wrap `inner` so every output update has the dtype of the incoming update (the gradient).

    Optax transforms with a float32 moment on bfloat16 parameters return float32 updates; the
    kernel's contract (and the conformance suite) wants updates in the parameters' dtype, so
    optimizer states are the only place where higher precision lives. The state is unchanged.
    """

    def update_fn(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        new_updates, new_state = inner.update(updates, state, params)
        new_updates = jax.tree.map(lambda u, g: u.astype(jnp.asarray(g).dtype), new_updates, updates)
        return new_updates, new_state

    return optax.GradientTransformation(inner.init, update_fn)
