"""Jitted k-means (k-means++ init, Lloyd iterations) and greedy residual k-means (`rq_kmeans`).

Lloyd follows scikit-learn's ``KMeans(algorithm="lloyd")`` step for step, so that with the same
initial centroids it gives the same codes and centroids (a test checks it against sklearn):

* an iteration assigns every row to its nearest centroid (squared Euclidean, argmin; ties go to the
  lower index) and moves each centroid to the mean of its rows;
* it stops when the labels did not change ("strict convergence") or when the summed squared
  centroid shift is ``<= tol * mean(var(x, axis=0))``, or after ``max_iter`` iterations; the returned
  labels are the assignment to the returned centroids.

Empty clusters are moved onto the rows farthest from their centroid (the ``j``-th empty cluster
gets the ``j``-th farthest row), like sklearn, except that the row is not subtracted from its old
cluster's mean in that iteration (the next iteration re-assigns it anyway).

k-means++ is the greedy variant (sklearn's default): each new centre is the best of
``2 + floor(ln k)`` candidates drawn with probability proportional to the squared distance to the
nearest centre chosen so far. All loops are ``lax`` loops inside one ``jit`` per shape.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Sequence

import attrs
import jax
import jax.numpy as jnp
import numpy as np

from sidcore.api import ConfigError

__all__ = ["ResidualKMeans", "assign", "fit_residual_kmeans", "kmeans_plus_plus", "lloyd", "sq_dists"]


def sq_dists(x: jax.Array, c: jax.Array) -> jax.Array:
    """``x [N, D]``, ``c [K, D]`` -> ``[N, K]`` squared distances (clamped at 0)."""
    d = (x * x).sum(1, keepdims=True) - 2.0 * (x @ c.T) + (c * c).sum(1)[None, :]
    return jnp.maximum(d, 0.0)


def assign(x: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Nearest centroid per row: ``(labels [N] int32, squared distance [N])``."""
    d = sq_dists(x, c)
    lab = jnp.argmin(d, axis=1).astype(jnp.int32)
    return lab, jnp.take_along_axis(d, lab[:, None], axis=1)[:, 0]


@partial(jax.jit, static_argnames=("k",))
def kmeans_plus_plus(key: jax.Array, x: jax.Array, k: int) -> jax.Array:
    """Greedy k-means++ seeding: ``[k, D]`` centroids chosen among the rows of ``x``."""
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    key, sub = jax.random.split(key)
    first = jax.random.randint(sub, (), 0, n)
    centers = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(x[first])
    closest = sq_dists(x, x[first][None])[:, 0]  # [N]

    def body(i, carry):
        centers, closest, key = carry
        key, sub = jax.random.split(key)
        logits = jnp.log(jnp.maximum(closest, 1e-30))
        cand = jax.random.categorical(sub, logits, shape=(trials,))  # [T]
        d = jnp.minimum(sq_dists(x, x[cand]), closest[:, None])  # [N, T]
        best = jnp.argmin(d.sum(0))
        return centers.at[i].set(x[cand[best]]), d[:, best], key

    centers, _, _ = jax.lax.fori_loop(1, k, body, (centers, closest, key))
    return centers


def _update(x: jax.Array, lab: jax.Array, mind: jax.Array, k: int) -> jax.Array:
    counts = jnp.zeros((k,), x.dtype).at[lab].add(1.0)
    sums = jax.ops.segment_sum(x, lab, num_segments=k)
    means = sums / jnp.maximum(counts, 1.0)[:, None]
    empty = counts == 0

    def relocate(means):
        far = jax.lax.top_k(mind, min(k, x.shape[0]))[1]  # farthest rows first
        rank = jnp.clip(jnp.cumsum(empty) - 1, 0, far.shape[0] - 1)
        return jnp.where(empty[:, None], x[far[rank]], means)

    return jax.lax.cond(empty.any(), relocate, lambda m: m, means)


@partial(jax.jit, static_argnames=("max_iter",))
def lloyd(x: jax.Array, init: jax.Array, tol: jax.Array, max_iter: int):
    """Lloyd iterations from ``init [K, D]``; ``tol`` is absolute (already scaled by the variance).

    Returns:
        ``(centroids [K, D], labels [N] int32, inertia, iterations)``.
    """
    k = init.shape[0]
    n = x.shape[0]

    def cond(state):
        it, _, _, done = state
        return (it < max_iter) & ~done

    def body(state):
        it, c, lab_old, _ = state
        lab, mind = assign(x, c)
        new = _update(x, lab, mind, k)
        shift = ((new - c) ** 2).sum()
        done = jnp.all(lab == lab_old) | (shift <= tol)
        return it + 1, new, lab, done

    state = (jnp.int32(0), init, jnp.full((n,), -1, jnp.int32), jnp.bool_(False))
    it, c, _, _ = jax.lax.while_loop(cond, body, state)
    lab, mind = assign(x, c)
    return c, lab, mind.sum(), it


@jax.jit
def _encode(x: jax.Array, codebooks: Sequence[jax.Array]) -> jax.Array:
    r = x
    codes = []
    for c in codebooks:
        lab, _ = assign(r, c)
        codes.append(lab)
        r = r - c[lab]
    return jnp.stack(codes, axis=1)


def check_sizes(sizes: Sequence[int], n: int, what: str) -> tuple[int, ...]:
    sizes = tuple(int(k) for k in sizes)
    if not sizes or any(k < 1 for k in sizes):
        raise ConfigError(f"{what}: codebook_sizes must be a non-empty list of positive integers, got {list(sizes)}")
    if max(sizes) > n:
        raise ConfigError(f"{what}: codebook size {max(sizes)} exceeds the number of items ({n})")
    return sizes


def fit_kmeans(key: jax.Array, x: jax.Array, k: int, *, max_iter: int, tol: float, n_init: int = 1,
               init: np.ndarray | None = None) -> tuple[jax.Array, jax.Array, float]:
    """k-means of ``x`` (best of ``n_init`` k-means++ seedings, or from ``init``): ``(C, labels, inertia)``."""
    scaled_tol = jnp.asarray(tol, x.dtype) * jnp.mean(jnp.var(x, axis=0))
    best = None
    for trial in range(1 if init is not None else n_init):
        c0 = jnp.asarray(init, x.dtype) if init is not None else kmeans_plus_plus(
            jax.random.fold_in(key, trial), x, k)
        c, lab, inertia, _ = lloyd(x, c0, scaled_tol, max_iter)
        if best is None or float(inertia) < best[2]:
            best = (c, lab, float(inertia))
    return best


def fit_residual_kmeans(x: np.ndarray, sizes: Sequence[int], *, seed: int, max_iter: int = 100,
                        tol: float = 1e-4, n_init: int = 1,
                        init: Sequence[np.ndarray] | None = None) -> "ResidualKMeans":
    """Greedy residual k-means: level ``l`` clusters the residuals left by levels ``< l``.

    Args:
        x: ``[N, D]`` embeddings (cast to float32).
        sizes: codebook size per level (any depth).
        seed: level ``l`` seeds k-means++ from ``fold_in(PRNGKey(seed), l)``.
        init: optional initial centroids per level (then ``n_init`` is ignored; for parity tests).
    """
    xj = jnp.asarray(np.asarray(x, np.float32))
    sizes = check_sizes(sizes, xj.shape[0], "rq_kmeans")
    key = jax.random.PRNGKey(seed)
    r, books, codes = xj, [], []
    for level, k in enumerate(sizes):
        c, lab, _ = fit_kmeans(jax.random.fold_in(key, level), r, k, max_iter=max_iter, tol=tol,
                               n_init=n_init, init=None if init is None else init[level])
        books.append(c)
        codes.append(lab)
        r = r - c[lab]
    return ResidualKMeans(codebooks=tuple(np.asarray(b) for b in books),
                          fit_codes=np.asarray(jnp.stack(codes, 1), np.int32))


@attrs.frozen(kw_only=True, eq=False)
class ResidualKMeans:
    """Fitted residual k-means (`sidcore.interfaces.FittedQuantizer`): one centroid table per level."""

    codebooks: tuple[np.ndarray, ...]  # [K_l, D] each
    fit_codes: np.ndarray  # [N, L]

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return tuple(int(c.shape[0]) for c in self.codebooks)

    def encode(self, x: np.ndarray) -> np.ndarray:
        books = [jnp.asarray(c) for c in self.codebooks]
        return np.asarray(_encode(jnp.asarray(np.asarray(x, np.float32)), books), np.int32)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes)
        return sum(c[codes[:, i]] for i, c in enumerate(self.codebooks)).astype(np.float32)

    def distances(self, x: np.ndarray, codes: np.ndarray, level: int) -> np.ndarray:
        codes = np.asarray(codes)
        r = np.asarray(x, np.float32) - sum(
            (c[codes[:, i]] for i, c in enumerate(self.codebooks[:level])), np.float32(0))
        return np.asarray(sq_dists(jnp.asarray(r), jnp.asarray(self.codebooks[level])))
