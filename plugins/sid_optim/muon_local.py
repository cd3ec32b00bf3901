"""The `muon_local` optimizer component: our own Muon as an optax transform, plus its alias.

`scale_by_muon_local` is the Muon preconditioner (momentum, then Newton–Schulz orthogonalization,
then an optional shape factor) for 2-D leaves; `muon_local` composes it with decoupled weight decay
and the learning-rate schedule, and routes embeddings, lm_head and non-2-D leaves to an AdamW
partition. Its options make both reference behaviours reproducible (reference-spec §5.3 local Muon:
``momentum_form="sum", ns_dtype="bfloat16", shape_scaling="none"``; §5.4 optax 0.2.6:
``momentum_form="ema", ns_dtype="float32", shape_scaling="optax_0_2_6"``).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from sid_optim.common import ADAM, MUON, dtype_or_none, keep_update_dtypes, labels_fn
from sid_optim.config import DEFAULT_NS_COEFFS, MuonLocalConfig


class MuonLocalState(NamedTuple):
    """State of `scale_by_muon_local`."""

    count: jax.Array  # [] int32, number of updates applied so far
    mu: optax.Updates  # momentum, same tree/shapes as the params, in mu_dtype


def newton_schulz(
    x: jax.Array,
    *,
    steps: int = 5,
    coeffs: Sequence[float] = DEFAULT_NS_COEFFS,
    eps: float = 1e-7,
    dtype: Any = jnp.float32,
) -> jax.Array:
    """Approximately orthogonalize a matrix with the quintic Newton–Schulz iteration.

    ``X <- X / (||X||_F + eps)`` (norm in float32, of X already cast to `dtype`); if X has more rows
    than columns it is transposed so ``A = X X^T`` is the small Gram matrix; then `steps` times
    ``A = X X^T; B = b A + c A A; X <- a X + B X``. The coefficients maximize the slope at zero, so
    singular values land roughly in [0.7, 1.2] rather than exactly 1 (Keller Jordan, 2024).

    Args:
        x: a ``[m, n]`` matrix.
        steps: number of iterations.
        coeffs: ``(a, b, c)``.
        eps: added to the Frobenius norm.
        dtype: dtype of the iteration (bfloat16 as in the reference local Muon, or float32).

    Returns:
        The ``[m, n]`` result in `dtype`.
    """
    if x.ndim != 2:
        raise ValueError(f"newton_schulz needs a 2-D matrix, got shape {x.shape}")
    a, b, c = coeffs
    x = x.astype(dtype)
    x32 = x.astype(jnp.float32)
    x = (x32 / (jnp.sqrt(jnp.sum(x32 * x32)) + eps)).astype(dtype)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T  # [n, m] with n < m
    for _ in range(steps):
        gram = x @ x.T  # [r, r], r = min(m, n)
        poly = b * gram + c * (gram @ gram)  # [r, r]
        x = a * x + poly @ x
    return x.T if tall else x


def shape_factor(shape: tuple[int, ...], *, shape_scaling: str, consistent_rms: float = 0.2) -> float:
    """The multiplier applied to an orthogonalized ``[fan_in, fan_out]`` update.

    Args:
        shape: the leaf's shape, ``(fan_in, fan_out)`` for a Flax ``[in, out]`` kernel.
        shape_scaling: ``"none"`` -> 1; ``"optax_0_2_6"`` -> ``sqrt(max(1, fan_out / fan_in))``;
            ``"moonshot"`` -> ``consistent_rms * sqrt(max(fan_in, fan_out))``.
        consistent_rms: the ``"moonshot"`` factor.

    Returns:
        A Python float (shapes are static).
    """
    fan_in, fan_out = shape
    if shape_scaling == "none":
        return 1.0
    if shape_scaling == "optax_0_2_6":
        return max(1.0, fan_out / fan_in) ** 0.5
    if shape_scaling == "moonshot":
        return consistent_rms * max(fan_in, fan_out) ** 0.5
    raise ValueError(f"unknown shape_scaling {shape_scaling!r}")


def scale_by_muon_local(
    *,
    momentum: float = 0.95,
    momentum_form: str = "sum",
    nesterov: bool = True,
    ns_steps: int = 5,
    ns_coeffs: Sequence[float] = DEFAULT_NS_COEFFS,
    ns_dtype: Any = jnp.bfloat16,
    eps: float = 1e-7,
    shape_scaling: str = "none",
    consistent_rms: float = 0.2,
    mu_dtype: Any = jnp.float32,
) -> optax.GradientTransformation:
    """Muon preconditioning of 2-D leaves: momentum -> Newton–Schulz -> shape factor.

    With gradient ``g`` (in float32), momentum ``m`` and ``mu = momentum``:

    - ``momentum_form="sum"``: ``m <- mu m + g``; Nesterov ``g_eff = g + mu m`` else ``m``; no bias
      correction (reference local Muon).
    - ``momentum_form="ema"``: ``m <- mu m + (1 - mu) g``; with ``t`` the new count, Nesterov
      ``g_eff = mu m / (1 - mu^(t+1)) + (1 - mu) g / (1 - mu^t)`` else ``m / (1 - mu^t)`` (optax).

    The update is ``shape_factor * newton_schulz(g_eff)`` cast to the gradient's dtype. Leaves
    masked out by ``optax.partition`` (``MaskedNode``) carry no arrays and are skipped.

    Args:
        momentum: ``mu``.
        momentum_form: ``"sum"`` or ``"ema"``.
        nesterov: use the Nesterov look-ahead.
        ns_steps: Newton–Schulz iterations.
        ns_coeffs: ``(a, b, c)`` of the quintic iteration.
        ns_dtype: dtype of the iteration.
        eps: Frobenius-norm epsilon.
        shape_scaling: see `shape_factor`.
        consistent_rms: factor of the ``"moonshot"`` scaling.
        mu_dtype: dtype of the stored momentum (``None``: the parameter's dtype).

    Returns:
        An ``optax.GradientTransformation`` with state `MuonLocalState`.

    Raises:
        ValueError: at trace time, for a leaf that is not 2-D.

    References:
        Jordan, `Muon: An optimizer for hidden layers in neural networks
        <https://kellerjordan.github.io/posts/muon/>`_, 2024.

        Liu et al., `Muon is Scalable for LLM Training <https://arxiv.org/abs/2502.16982>`_, 2025.
    """
    if momentum_form not in ("sum", "ema"):
        raise ValueError(f"momentum_form must be 'sum' or 'ema', got {momentum_form!r}")
    shape_factor((1, 1), shape_scaling=shape_scaling)  # validates the name early
    coeffs = tuple(float(c) for c in ns_coeffs)

    def init_fn(params: Any) -> MuonLocalState:
        mu = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), mu_dtype or jnp.asarray(p).dtype), params)
        return MuonLocalState(count=jnp.zeros([], jnp.int32), mu=mu)

    def update_fn(updates: Any, state: MuonLocalState, params: Any = None) -> tuple[Any, MuonLocalState]:
        del params
        count = optax.safe_increment(state.count)
        t = count.astype(jnp.float32)

        def one_leaf(g: jax.Array, m: jax.Array) -> tuple[jax.Array, jax.Array]:
            if g.ndim != 2:
                raise ValueError(f"scale_by_muon_local only handles 2-D leaves, got shape {g.shape}")
            g32 = g.astype(jnp.float32)
            m32 = m.astype(jnp.float32)
            if momentum_form == "sum":
                m32 = momentum * m32 + g32
                g_eff = g32 + momentum * m32 if nesterov else m32
            else:
                m32 = momentum * m32 + (1.0 - momentum) * g32
                if nesterov:
                    g_eff = (momentum * m32 / (1.0 - momentum ** (t + 1.0))
                             + (1.0 - momentum) * g32 / (1.0 - momentum**t))
                else:
                    g_eff = m32 / (1.0 - momentum**t)
            ortho = newton_schulz(g_eff, steps=ns_steps, coeffs=coeffs, eps=eps, dtype=ns_dtype)
            factor = shape_factor(g.shape, shape_scaling=shape_scaling, consistent_rms=consistent_rms)
            if factor != 1.0:
                ortho = ortho.astype(jnp.float32) * factor
            return ortho.astype(g.dtype), m32.astype(m.dtype)

        grads, treedef = jax.tree.flatten(updates)
        pairs = [one_leaf(g, m) for g, m in zip(grads, treedef.flatten_up_to(state.mu))]
        new_updates = treedef.unflatten([u for u, _ in pairs])
        new_mu = treedef.unflatten([m for _, m in pairs])
        return new_updates, MuonLocalState(count=count, mu=new_mu)

    return optax.GradientTransformation(init_fn, update_fn)


def muon_local(
    learning_rate: optax.ScalarOrSchedule,
    aux_learning_rate: optax.ScalarOrSchedule,
    *,
    weight_decay: float = 0.0,
    aux_b1: float = 0.9,
    aux_b2: float = 0.999,
    aux_eps: float = 1e-8,
    aux_weight_decay: float = 0.0,
    aux_mu_dtype: Any = None,
    aux_nesterov: bool = False,
    param_labels: Callable[[Any], Any] | None = None,
    **muon_kwargs: Any,
) -> optax.GradientTransformation:
    """Muon for matrices, AdamW for everything else, as one transform.

    The ``"muon"`` partition is ``scale_by_muon_local -> add_decayed_weights(weight_decay) ->
    scale_by_learning_rate(learning_rate)`` (decoupled decay, multiplied by the LR as in optax and
    the reference after commit 20f1959); the ``"adam"`` partition is ``optax.adamw`` (or NAdamW).

    Args:
        learning_rate: Muon LR or schedule.
        aux_learning_rate: AdamW LR or schedule.
        weight_decay: decoupled weight decay of the Muon leaves.
        aux_b1: AdamW beta1.
        aux_b2: AdamW beta2.
        aux_eps: AdamW eps.
        aux_weight_decay: AdamW decoupled weight decay.
        aux_mu_dtype: AdamW first-moment dtype (``None``: the parameter's dtype).
        aux_nesterov: NAdamW instead of AdamW.
        param_labels: ``params -> tree of "muon"/"adam"``; default `sid_optim.common.param_labels`
            with ``max_dim=10000``.
        **muon_kwargs: forwarded to `scale_by_muon_local`.

    Returns:
        An ``optax.GradientTransformation`` (an ``optax.partition`` state ``{"adam", "muon"}``).

    References:
        Jordan, `Muon: An optimizer for hidden layers in neural networks
        <https://kellerjordan.github.io/posts/muon/>`_, 2024.

        Liu et al., `Muon is Scalable for LLM Training <https://arxiv.org/abs/2502.16982>`_, 2025.
    """
    muon_tx = optax.chain(
        scale_by_muon_local(**muon_kwargs),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )
    adam_tx = optax.adamw(
        aux_learning_rate,
        b1=aux_b1,
        b2=aux_b2,
        eps=aux_eps,
        weight_decay=aux_weight_decay,
        mu_dtype=aux_mu_dtype,
        nesterov=aux_nesterov,
    )
    return optax.partition({MUON: muon_tx, ADAM: adam_tx}, param_labels or labels_fn(10000))


def build(
    cfg: MuonLocalConfig,
    *,
    learning_rate: float,
    make_schedule: Callable[[float], optax.Schedule],
) -> optax.GradientTransformation:
    """Build `muon_local` for the kernel.

    Args:
        cfg: the component's options.
        learning_rate: peak Muon learning rate (``train.learning_rate``).
        make_schedule: ``peak -> schedule`` owned by the kernel; called for the Muon LR and for
            ``cfg.aux_learning_rate``.

    Returns:
        An ``optax.GradientTransformation`` whose updates keep the gradients' dtypes.
    """
    tx = muon_local(
        make_schedule(learning_rate),
        make_schedule(cfg.aux_learning_rate),
        weight_decay=cfg.weight_decay,
        aux_b1=cfg.aux_b1,
        aux_b2=cfg.aux_b2,
        aux_eps=cfg.aux_eps,
        aux_weight_decay=cfg.aux_weight_decay,
        aux_mu_dtype=dtype_or_none(cfg.aux_mu_dtype),
        aux_nesterov=cfg.aux_nesterov,
        param_labels=labels_fn(cfg.max_dim),
        momentum=cfg.momentum,
        momentum_form=cfg.momentum_form,
        nesterov=cfg.nesterov,
        ns_steps=cfg.ns_steps,
        ns_coeffs=cfg.ns_coeffs,
        ns_dtype=dtype_or_none(cfg.ns_dtype),
        eps=cfg.eps,
        shape_scaling=cfg.shape_scaling,
        consistent_rms=cfg.consistent_rms,
        mu_dtype=dtype_or_none(cfg.mu_dtype),
    )
    return keep_update_dtypes(tx)
