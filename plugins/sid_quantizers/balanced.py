"""Size-constrained residual k-means (`rq_kmeans_balanced`).

Upstream (``rqkmeans_constrained.py``) runs ``KMeansConstrained(size_min=n//K-1, size_max=n//K+1)``
per level, an exact min-cost-flow assignment. This module reaches the same constraint (tighter:
every cluster holds ``n//K`` or ``n//K + 1`` rows, the first ``n % K`` clusters one more) with a
cheaper, vectorised assignment step, inside Lloyd iterations on each level's residuals:

1. **Warm start**: plain k-means (`sid_quantizers.kmeans`, k-means++).
2. **Prices** (jitted): log-domain Sinkhorn between uniform row mass and the capacities, on the
   squared distances with temperature ``tau * median_i(q90(d_i) - min(d_i))``; the column
   potentials ``g_k`` act as prices, ``d_ik - g_k`` favours under-filled clusters.
3. **Capacity rounds** (numpy): every unassigned row proposes to its cheapest cluster that still
   has room; each cluster accepts its cheapest proposers up to its remaining capacity; repeat. A
   round either assigns every proposer or fills a cluster, so it ends after at most ``K`` rounds
   with every capacity met exactly.
4. Centroids move to the means of their rows; stop when the assignment repeats.

`fit_codes` are the balanced assignments; `encode` of new rows is the plain greedy argmin.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from sid_quantizers.kmeans import ResidualKMeans, check_sizes, fit_kmeans, sq_dists

__all__ = ["capacities", "capacity_assign", "fit_balanced", "sinkhorn_prices"]


def capacities(n: int, k: int) -> np.ndarray:
    """``[K]``: ``n // k`` each, plus one for the first ``n % k`` clusters."""
    caps = np.full(k, n // k, np.int64)
    caps[: n % k] += 1
    return caps


@partial(jax.jit, static_argnames=("iterations",))
def sinkhorn_prices(d: jax.Array, caps: jax.Array, tau_scale: float, iterations: int) -> jax.Array:
    """Column prices ``[K]`` (same units as ``d``) of the entropic transport rows -> capacities."""
    lo = d.min(1)
    spread = jnp.quantile(d, 0.9, axis=1) - lo
    eps = jnp.maximum(tau_scale * jnp.median(spread), 1e-12)
    c = (d - lo[:, None]) / eps  # row shifts do not change the column prices
    log_b = jnp.log(caps / caps.sum())
    log_a = -jnp.log(d.shape[0])

    def body(_, g):
        f = log_a - jax.nn.logsumexp(g[None, :] - c, axis=1)  # [N]
        return log_b - jax.nn.logsumexp(f[:, None] - c, axis=0)  # [K]

    g = jax.lax.fori_loop(0, iterations, body, jnp.zeros(d.shape[1], d.dtype))
    return (g - g.mean()) * eps


def capacity_assign(cost: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Assignment ``[N]`` with exactly ``caps[k]`` rows per cluster (``caps.sum() == N``), by proposal
    rounds on ``cost [N, K]`` (see the module docstring)."""
    n, k = cost.shape
    if int(caps.sum()) != n:
        raise ValueError(f"capacities sum to {int(caps.sum())}, expected {n}")
    out = np.full(n, -1, np.int64)
    remaining = caps.astype(np.int64).copy()
    todo = np.arange(n)
    while todo.size:
        sub = np.where(remaining[None, :] > 0, cost[todo], np.inf)
        choice = np.argmin(sub, axis=1)
        best = sub[np.arange(todo.size), choice]
        order = np.lexsort((best, choice))  # by cluster, then cost
        ch = choice[order]
        first = np.searchsorted(ch, ch, side="left")
        rank = np.arange(ch.size) - first
        take = rank < remaining[ch]
        rows = todo[order[take]]
        out[rows] = ch[take]
        remaining -= np.bincount(ch[take], minlength=k)
        todo = np.setdiff1d(todo, rows, assume_unique=True)
    return out


def _balanced_level(key, r: jax.Array, k: int, *, max_iter: int, kmeans_iter: int, iterations: int,
                    tau: float) -> tuple[np.ndarray, np.ndarray]:
    c, _, _ = fit_kmeans(key, r, k, max_iter=kmeans_iter, tol=1e-4)
    caps = capacities(r.shape[0], k)
    caps_j = jnp.asarray(caps, r.dtype)
    lab = None
    for _ in range(max_iter):
        d = sq_dists(r, c)
        prices = sinkhorn_prices(d, caps_j, tau, iterations)
        new = capacity_assign(np.asarray(d - prices[None, :], np.float64), caps)
        if lab is not None and np.array_equal(new, lab):
            break
        lab = new
        sums = jax.ops.segment_sum(r, jnp.asarray(lab, jnp.int32), num_segments=k)
        c = sums / caps_j[:, None]
    return np.asarray(c), lab.astype(np.int32)


def fit_balanced(x: np.ndarray, sizes, *, seed: int, max_iter: int = 30, kmeans_iter: int = 50,
                 sinkhorn_iterations: int = 100, tau: float = 0.1) -> ResidualKMeans:
    """Balanced residual k-means; level ``l`` seeds from ``fold_in(PRNGKey(seed), l)``."""
    xn = np.asarray(x, np.float32)
    sizes = check_sizes(sizes, xn.shape[0], "rq_kmeans_balanced")
    key = jax.random.PRNGKey(seed)
    r, books, codes = xn, [], []
    for level, k in enumerate(sizes):
        c, lab = _balanced_level(jax.random.fold_in(key, level), jnp.asarray(r), k, max_iter=max_iter,
                                 kmeans_iter=kmeans_iter, iterations=sinkhorn_iterations, tau=tau)
        books.append(c)
        codes.append(lab)
        r = r - c[lab]
    return ResidualKMeans(codebooks=tuple(books), fit_codes=np.stack(codes, 1).astype(np.int32))
