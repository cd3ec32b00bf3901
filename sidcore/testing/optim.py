"""Conformance suite for optimizer components (built-in and third-party), in the spirit of optax's
``_common_test.py``.

`check_optimizer(tx_factory)` runs every property the kernel relies on against an
``optax.GradientTransformation`` on a small model-shaped parameter tree (embedding, a non-square
kernel with its bias, a tall kernel, norm scales and an lm_head; float32, then mixed with bfloat16):
init and update are pure and jittable, ``jax.eval_shape(init)`` works (the kernel shards the state
from it), updates are finite and in each parameter's dtype, the state keeps its tree structure,
shapes and dtypes across steps, and 200 steps decrease a quadratic loss. Each failed property
raises ``AssertionError`` naming the property. Usage in a plugin's tests::

    from sidcore.testing.optim import check_optimizer

    def test_conformance():
        check_optimizer(lambda: my_plugin.build(MyConfig(), learning_rate=0.02,
                                                make_schedule=optax.constant_schedule))
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

TxFactory = Callable[[], optax.GradientTransformation]


def model_like_params(seed: int = 0, dtype: Any = jnp.float32) -> dict[str, Any]:
    """A tiny pure-dict tree shaped like the NNX model's params (Dense kernels are ``[in, out]``).

    Args:
        seed: PRNG seed.
        dtype: dtype of every leaf.

    Returns:
        ``{"model": {"embed_tokens": ..., "layers": {0: ...}, "norm": ...}, "lm_head": ...}``.
    """
    shapes = {
        "model": {
            "embed_tokens": {"embedding": (24, 8)},  # [V, H]
            "layers": {
                0: {
                    "self_attn": {"q_proj": {"kernel": (8, 16), "bias": (16,)}},  # wide [H, 2H]
                    "mlp": {"down_proj": {"kernel": (16, 8)}},  # tall [2H, H]
                    "input_layernorm": {"scale": (8,)},
                }
            },
            "norm": {"scale": (8,)},
        },
        "lm_head": {"kernel": (8, 24)},  # [H, V]
    }
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    arrays = [(0.1 * jax.random.normal(k, s)).astype(dtype) for k, s in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, arrays)


def quadratic_loss(params: Any, targets: Any) -> jax.Array:
    """``sum over leaves of mean((p - target)^2)``, computed in float32."""
    per_leaf = jax.tree.map(
        lambda p, t: jnp.mean((p.astype(jnp.float32) - t.astype(jnp.float32)) ** 2), params, targets
    )
    return sum(jax.tree.leaves(per_leaf))


def _np_tree(tree: Any) -> Any:
    return jax.tree.map(lambda x: np.array(x, copy=True), tree)


def _assert_same_values(a: Any, b: Any, what: str, *, rel: float = 0.0) -> None:
    sa, sb = jax.tree.structure(a), jax.tree.structure(b)
    assert sa == sb, f"{what}: tree structure differs: {sa} vs {sb}"
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
        tol = rel * float(np.max(np.abs(x64), initial=0.0)) + (1e-6 if rel else 0.0)
        assert x64.shape == y64.shape and np.all(np.abs(x64 - y64) <= tol), (
            f"{what}: leaf {jax.tree_util.keystr(path)} differs (max |diff| "
            f"{float(np.max(np.abs(x64 - y64), initial=0.0)):.3g} > {tol:.3g})"
        )


def _signature(tree: Any) -> tuple[Any, list[tuple[tuple[int, ...], str]]]:
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, [(tuple(jnp.shape(x)), str(jnp.result_type(x))) for x in leaves]


def check_pure_and_jittable(tx: optax.GradientTransformation, params: Any, grads: Any) -> None:
    """init/update do not mutate inputs, are deterministic, jit(init) equals init, eval_shape works.

    ``update`` is exercised under ``jax.jit`` only (as the kernel runs it): tracing it twice into
    fresh compilations must give identical results, which catches hidden Python-side state.
    """
    params_before, grads_before = _np_tree(params), _np_tree(grads)
    state = tx.init(params)
    _assert_same_values(state, tx.init(params), "init is not deterministic")
    _assert_same_values(state, jax.jit(tx.init)(params), "jit(init) differs from init")
    abstract = jax.eval_shape(tx.init, params)
    assert _signature(abstract) == _signature(state), "eval_shape(init) differs from init"

    state_before = _np_tree(state)
    updates, new_state = jax.jit(tx.update)(grads, state, params)
    _assert_same_values(params, params_before, "update mutated params")
    _assert_same_values(grads, grads_before, "update mutated grads")
    _assert_same_values(state, state_before, "update mutated the state")
    again, again_state = jax.jit(lambda g, s, p: tx.update(g, s, p))(grads, state, params)
    _assert_same_values(updates, again, "update is not deterministic across traces")
    _assert_same_values(new_state, again_state, "update state is not deterministic across traces")
    assert _signature(new_state) == _signature(state), "update changed the state signature"


def check_dtypes_and_structure(tx: optax.GradientTransformation, params: Any, *, steps: int = 3) -> None:
    """Updates are finite and in each param's dtype; the state signature is stable across steps."""
    state = tx.init(params)
    sig0 = _signature(state)
    step = jax.jit(tx.update)
    for i in range(steps):
        grads = jax.tree.map(lambda p, k=i: (jnp.cos(p.astype(jnp.float32) * (k + 1)) - 0.5).astype(p.dtype),
                             params)
        updates, state = step(grads, state, params)
        for (path, u), p in zip(jax.tree_util.tree_flatten_with_path(updates)[0], jax.tree.leaves(params)):
            name = jax.tree_util.keystr(path)
            assert u.dtype == p.dtype, f"update {name} has dtype {u.dtype}, param has {p.dtype}"
            assert u.shape == p.shape, f"update {name} has shape {u.shape}, param has {p.shape}"
            assert bool(jnp.all(jnp.isfinite(u.astype(jnp.float32)))), f"update {name} is not finite"
        params = optax.apply_updates(params, updates)
        assert _signature(state) == sig0, f"state signature changed at step {i + 1}"


def check_decreases_quadratic(
    tx: optax.GradientTransformation, params: Any, *, steps: int = 200, max_loss_ratio: float = 0.5,
    seed: int = 1,
) -> tuple[float, float]:
    """`steps` jitted steps on `quadratic_loss` towards random targets end below ``max_loss_ratio``
    times the initial loss. Returns ``(initial, final)`` losses."""
    targets = model_like_params(seed, jnp.float32)
    targets = jax.tree.map(lambda t: 10.0 * t, targets)  # ~N(0, 1) entries

    @jax.jit
    def run(params: Any) -> tuple[jax.Array, Any]:
        def body(carry: tuple[Any, Any], _: None) -> tuple[tuple[Any, Any], jax.Array]:
            p, s = carry
            loss, grads = jax.value_and_grad(quadratic_loss)(p, targets)
            updates, s = tx.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), loss

        (p, _), losses = jax.lax.scan(body, (params, tx.init(params)), None, length=steps)
        return losses, p

    losses, final_params = run(params)
    initial = float(losses[0])
    final = float(quadratic_loss(final_params, targets))
    assert np.isfinite(final), f"loss is not finite after {steps} steps"
    assert final < max_loss_ratio * initial, (
        f"{steps} steps did not decrease the quadratic enough: {initial:.4g} -> {final:.4g} "
        f"(want < {max_loss_ratio} x initial)"
    )
    return initial, final


def check_optimizer(
    tx_factory: TxFactory, *, steps: int = 200, max_loss_ratio: float = 0.5
) -> dict[str, float]:
    """Run the whole optimizer conformance suite.

    Args:
        tx_factory: zero-argument callable returning the ``optax.GradientTransformation`` under
            test (e.g. a registered factory with a constant schedule bound).
        steps: steps of the quadratic-decrease check.
        max_loss_ratio: the final/initial loss ratio the quadratic check must beat.

    Returns:
        ``{"initial_loss": .., "final_loss": ..}`` of the quadratic check.

    Raises:
        AssertionError: naming the first property that failed.
    """
    tx = tx_factory()
    assert isinstance(tx, optax.GradientTransformation), f"factory returned {type(tx).__name__}"
    params32 = model_like_params(0, jnp.float32)
    grads32 = jax.tree.map(lambda p: jnp.sin(10.0 * p), params32)
    check_pure_and_jittable(tx, params32, grads32)
    mixed = dict(params32, lm_head=jax.tree.map(lambda x: x.astype(jnp.bfloat16), params32["lm_head"]))
    mixed["model"] = dict(mixed["model"], layers={0: jax.tree.map(lambda x: x.astype(jnp.bfloat16),
                                                                   params32["model"]["layers"][0])})
    check_dtypes_and_structure(tx, mixed)  # float32 and bfloat16 leaves, Muon and Adam paths
    initial, final = check_decreases_quadratic(tx, params32, steps=steps, max_loss_ratio=max_loss_ratio)
    return {"initial_loss": initial, "final_loss": final}
