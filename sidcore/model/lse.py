"""Chunked ``logsumexp`` over the vocabulary projection with a recomputing backward pass.

``chunked_logsumexp(h [N, H], w [V, H]) = log sum_v exp(h . w_v)`` over the rows ``v < real_vocab``,
scanning the vocabulary in chunks with an online max/sum merge, so no ``[N, V]`` array exists.

Why a custom VJP: differentiating the scan lets JAX keep every chunk's logits as residuals and
replay the online merge backwards, which on CPU took ~10x the forward (the RL update's largest
cost, docs/rl.md). The gradient has a closed form, ``d lse / d z = softmax(z)``, so the backward
pass recomputes each chunk's logits once and emits both products in the same scan::

    p = exp(z_chunk - lse) * g          # [N, C]
    dh += p @ w_chunk                    # [N, H]
    dw_chunk = p^T @ h                   # [C, H]

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
    c, n_chunks = _chunking(real_vocab, chunk)
    hc = h.astype(cd)
    g = g.astype(_F32)

    def body(dh, i):
        z, wc, keep = _chunk_logits(hc, w, i, real_vocab, c, cd)
        p = jnp.where(keep[None, :], jnp.exp(z - lse[:, None]), 0.0) * g[:, None]  # [N, C]
        pc = p.astype(cd)
        dh = dh + jnp.einsum("nc,ch->nh", pc, wc, preferred_element_type=_F32)
        return dh, jnp.einsum("nc,nh->ch", pc, hc, preferred_element_type=_F32)  # [C, H]

    dh, dws = jax.lax.scan(body, jnp.zeros(h.shape, _F32), jnp.arange(n_chunks))  # dws [n, C, H]
    hd = w.shape[1]
    head = dws[:-1].reshape((n_chunks - 1) * c, hd)  # chunks 0 .. n-2 tile [0, (n-1) c)
    dw = jnp.zeros(w.shape, _F32)
    dw = jax.lax.dynamic_update_slice_in_dim(dw, head, 0, axis=0)
    dw = dw.at[real_vocab - c:real_vocab].add(dws[-1])  # the last chunk (its overlap rows are 0)
    return dh.astype(h.dtype), dw.astype(w.dtype)


chunked_logsumexp.defvjp(_fwd, _bwd)
