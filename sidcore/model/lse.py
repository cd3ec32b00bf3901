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

The scan runs over the whole chunks only, so their ``dw`` rows stack into the gradient in order;
the rows left over form one static-size chunk after it (about 1.5x faster on CPU than overlapping
the last chunk and assembling ``dw`` with updates into zeros, which re-wrote the [V, H] array).

Same math as the autodiff of the forward (rounding aside); rows ``>= real_vocab`` get zero gradient.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["chunked_logsumexp"]

_F32 = jnp.float32


def _chunking(real_vocab: int, chunk: int) -> tuple[int, int]:
    c = min(int(chunk), int(real_vocab))
    return c, -(-int(real_vocab) // c)


def _chunk_logits(hc: jax.Array, w: jax.Array, i: jax.Array, real_vocab: int, c: int, cd: Any
                  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Logits ``[N, C]`` of chunk ``i`` (the last chunk overlaps the previous one: overlap -> ``keep``
    False), the chunk's weight rows ``[C, H]`` and ``keep [C]``."""
    start = jnp.minimum(i * c, real_vocab - c)
    wc = jax.lax.dynamic_slice_in_dim(w, start, c, axis=0).astype(cd)  # [C, H]
    z = jnp.einsum("nh,ch->nc", hc, wc, preferred_element_type=_F32)  # [N, C]
    keep = start + jnp.arange(c) >= i * c  # [C]
    return z, wc, keep


def _forward(h: jax.Array, w: jax.Array, real_vocab: int, chunk: int, cd: Any) -> jax.Array:
    c, n_chunks = _chunking(real_vocab, chunk)
    hc = h.astype(cd)

    def body(carry, i):
        m, total = carry  # [N], [N]
        z, _, keep = _chunk_logits(hc, w, i, real_vocab, c, cd)
        z = jnp.where(keep[None, :], z, -jnp.inf)
        m_new = jnp.maximum(m, z.max(axis=-1))
        total = total * jnp.exp(m - m_new) + jnp.exp(z - m_new[:, None]).sum(axis=-1)
        return (m_new, total), None

    init = (jnp.full(h.shape[:1], -jnp.inf, _F32), jnp.zeros(h.shape[:1], _F32))
    (m, total), _ = jax.lax.scan(body, init, jnp.arange(n_chunks))
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
    c = min(int(chunk), int(real_vocab))
    n_full, tail = divmod(int(real_vocab), c)
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
