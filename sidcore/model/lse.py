"""Chunked ``logsumexp`` over the vocabulary projection with a recomputing backward pass.

``chunked_logsumexp(h [N, H], w [V, H]) = log sum_v exp(h . w_v)`` over the rows ``v < real_vocab``,
scanning the vocabulary in chunks with an online max/sum merge, so no ``[N, V]`` array exists.

Why a custom VJP: differentiating the scan lets JAX keep every chunk's logits as residuals and
replay the online merge backwards, which on CPU took ~10x the forward (the RL update's largest
cost, docs/rl.md). The gradient has a closed form, ``d lse / d z = softmax(z)``, so the backward
pass recomputes each chunk's logits once, vocab-major, and emits both products in the same scan::

    p = exp(z_chunk - lse) * g          # [C, N]
    dh += p^T @ w_chunk                  # [N, H]
    dw_chunk = p @ h                     # [C, H]

Both passes scan the whole chunks only; the rows left over form one static-size chunk after the
scan (no overlapping, masked last chunk). The backward writes each chunk's ``dw`` rows in place
into one ``[V, H]`` buffer carried by the loop (with the vocab-major layout, the RL update on the
bench shape went from 229 to 174 ms min against the old overlapping chunk and ``dw`` assembled
into zeros afterwards, which wrote the [V, H] array twice; stacking the chunks instead: 180 ms).

Same math as the autodiff of the forward (rounding aside); rows ``>= real_vocab`` get zero gradient.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["chunked_logsumexp", "logsumexp_given"]

_F32 = jnp.float32


def _split(real_vocab: int, chunk: int) -> tuple[int, int, int]:
    """``(C, whole chunks, tail rows)``: the scan runs over ``[0, n C)``, the tail after it."""
    c = min(int(chunk), int(real_vocab))
    n, tail = divmod(int(real_vocab), c)
    return c, n, tail


def _forward(h: jax.Array, w: jax.Array, real_vocab: int, chunk: int, cd: Any) -> jax.Array:
    c, n_full, tail = _split(real_vocab, chunk)
    hc = h.astype(cd)

    def merge(carry, wc):
        m, total = carry  # [N], [N]: running max and sum of exp(z - max)
        z = jnp.einsum("nh,ch->nc", hc, wc.astype(cd), preferred_element_type=_F32)  # [N, C]
        m_new = jnp.maximum(m, z.max(axis=-1))
        return m_new, total * jnp.exp(m - m_new) + jnp.exp(z - m_new[:, None]).sum(axis=-1)

    def body(carry, i):
        return merge(carry, jax.lax.dynamic_slice_in_dim(w, i * c, c, axis=0)), None

    init = (jnp.full(h.shape[:1], -jnp.inf, _F32), jnp.zeros(h.shape[:1], _F32))
    carry, _ = jax.lax.scan(body, init, jnp.arange(n_full))
    if tail:
        carry = merge(carry, w[n_full * c:real_vocab])
    m, total = carry
    return m + jnp.log(total)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def chunked_logsumexp(h: jax.Array, w: jax.Array, real_vocab: int, chunk: int = 8192,
                      compute_dtype: Any = _F32) -> jax.Array:
    """``[N]`` float32 logsumexp of ``h [N, H] @ w[:real_vocab].T`` (matmuls in ``compute_dtype``)."""
    return _forward(h, w, real_vocab, chunk, compute_dtype)


def _fwd(h, w, real_vocab, chunk, cd):
    lse = _forward(h, w, real_vocab, chunk, cd)
    return lse, (h, w, lse)


def _bwd(real_vocab, chunk, cd, res, g):
    h, w, lse = res
    return _grads(h, w, lse, g, real_vocab, chunk, cd)


def _grads(h, w, lse, g, real_vocab, chunk, cd):
    """``(dh, dw)`` of ``sum(g * lse)`` given the normalisers ``lse``: one recomputing scan."""
    c, n_full, tail = _split(real_vocab, chunk)
    hc = h.astype(cd)
    g = g.astype(_F32)

    def grads(wc):
        # Vocab-major [C, N]: dw_chunk = p @ h is a plain matmul writing [C, H] rows in place.
        wc = wc.astype(cd)
        z = jnp.einsum("ch,nh->cn", wc, hc, preferred_element_type=_F32)
        p = (jnp.exp(z - lse[None, :]) * g[None, :]).astype(cd)  # [C, N]
        return (jnp.einsum("cn,ch->nh", p, wc, preferred_element_type=_F32),
                jnp.einsum("cn,nh->ch", p, hc, preferred_element_type=_F32))

    def body(carry, i):
        dh, dw = carry
        d_h, d_w = grads(jax.lax.dynamic_slice_in_dim(w, i * c, c, axis=0))
        return (dh + d_h, jax.lax.dynamic_update_slice_in_dim(dw, d_w, i * c, axis=0)), None

    # dw is the loop's own [V, H] buffer, written chunk by chunk in place (rows >= real_vocab stay 0).
    init = (jnp.zeros(h.shape, _F32), jnp.zeros(w.shape, _F32))
    (dh, dw), _ = jax.lax.scan(body, init, jnp.arange(n_full))
    if tail:  # the rows left over, as one static-size chunk after the scan
        d_h, d_w = grads(w[n_full * c:real_vocab])
        dh = dh + d_h
        dw = jax.lax.dynamic_update_slice_in_dim(dw, d_w, n_full * c, axis=0)
    return dh.astype(h.dtype), dw.astype(w.dtype)


chunked_logsumexp.defvjp(_fwd, _bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def logsumexp_given(h: jax.Array, w: jax.Array, lse: jax.Array, real_vocab: int, chunk: int = 8192,
                    compute_dtype: Any = _F32) -> jax.Array:
    """`chunked_logsumexp` whose value is already known: returns ``lse [N]`` (no vocabulary pass) and
    differentiates like the log-sum-exp of ``h @ w[:real_vocab].T`` at that value (``lse`` itself
    gets no gradient). For log-probs computed earlier at the same parameters (an RL rollout's)."""
    del h, w, real_vocab, chunk, compute_dtype
    return lse


def _given_fwd(h, w, lse, real_vocab, chunk, cd):
    return lse, (h, w, lse)


def _given_bwd(real_vocab, chunk, cd, res, g):
    h, w, lse = res
    dh, dw = _grads(h, w, lse, g, real_vocab, chunk, cd)
    return dh, dw, jnp.zeros_like(lse)


logsumexp_given.defvjp(_given_fwd, _given_bwd)
