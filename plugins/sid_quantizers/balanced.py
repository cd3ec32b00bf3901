"""Size-constrained residual k-means (`rq_kmeans_balanced`), upstream's constrained RQ-Kmeans.

Upstream (``rqkmeans_constrained.py``) runs, per level on the residuals,
``KMeansConstrained(size_min=max(1, n//K - 1), size_max=n//K + 1, n_init=3, max_iter=100, tol=1e-4)``:
Lloyd iterations whose assignment step is an exact min-cost flow under the size band. This module
does the same, with its own exact solver, inside Lloyd iterations on each level's residuals:

1. **Warm start** (each of ``n_init`` trials): plain k-means (`sid_quantizers.kmeans`, k-means++).
2. **A feasible start** for the first assignment: Sinkhorn prices (jitted log-domain Sinkhorn
   between uniform row mass and the capacities, temperature ``tau * median_i(q90(d_i) - min(d_i))``)
   and capacity rounds (every unassigned row proposes to its cheapest cluster with room, each
   cluster keeps its cheapest proposers; capacities ``n//K`` or ``n//K + 1``, inside the band).
3. **Exact assignment** (`exact_assign`): negative-cycle cancelling on the ``K + 1``-node cluster
   graph. Edge ``a -> b`` costs the cheapest move of one row from cluster ``a`` to ``b``,
   ``min_{i in a} d_ib - d_ia``; an extra node ``S`` has edges ``S -> a`` (``a`` may shrink:
   size > min) and ``b -> S`` (``b`` may grow: size < max), cost 0. A negative cycle is an
   improving exchange that keeps every size in the band; the assignment is optimal (equal to the
   min-cost flow) exactly when none is left. Bellman-Ford from a zero source finds them (the
   cycles of its predecessor graph are negative and vertex-disjoint, so all are applied at once).
   The previous iteration's assignment is the next one's start, so late iterations need few passes.
4. Centroids move to the means of their rows; stop when the assignment repeats or the summed squared
   centroid shift is ``<= tol * mean variance`` (sklearn / upstream rule), or after ``max_iter``.
   The trial with the lowest inertia wins (upstream ``n_init=3``, the default).

The cost is the squared distance (the k-means objective); upstream's flow uses the Euclidean
distance, rounded to 1e-3. `fit_codes` are the balanced assignments; `encode` of new rows is the
plain greedy argmin.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from sid_quantizers.kmeans import ResidualKMeans, check_sizes, fit_kmeans, sq_dists

__all__ = ["capacities", "capacity_assign", "exact_assign", "fit_balanced", "size_band", "sinkhorn_prices"]


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


def size_band(n: int, k: int, slack: int = 1) -> tuple[int, int]:
    """``(min, max)`` items per cluster: ``(max(1, n//k - slack), n//k + 1)`` (upstream: slack 1)."""
    return max(1, n // k - slack), n // k + 1


def _edge_rows(cost: np.ndarray, lab: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """``[len(clusters), K]``: per (non-empty) cluster ``a``, ``min_{i in a} cost[i, j] - cost[i, a]``."""
    rows = np.flatnonzero(np.isin(lab, clusters))
    rows = rows[np.argsort(lab[rows], kind="stable")]
    delta = cost[rows] - cost[rows, lab[rows]][:, None]  # [R, K]: moving row i to cluster j
    starts = np.searchsorted(lab[rows], clusters)
    return np.minimum.reduceat(delta, starts, axis=0)


def _pred_cycles(pred: np.ndarray) -> list[list[int]]:
    """Cycles of the functional graph ``v -> pred[v]`` (-1 = none), each in forward edge order."""
    seen = np.zeros(pred.shape[0], np.int64)
    cycles = []
    for s in range(pred.shape[0]):
        path, v = [], s
        while v >= 0 and not seen[v]:
            seen[v] = s + 1
            path.append(v)
            v = int(pred[v])
        if v >= 0 and seen[v] == s + 1:
            cycles.append(path[path.index(v):][::-1])
    return cycles


def exact_assign(cost: np.ndarray, labels: np.ndarray, lo: int, hi: int, *, rtol: float = 1e-9,
                 max_passes: int = 1_000_000) -> tuple[np.ndarray, int]:
    """Minimum-cost assignment ``[N]`` with ``lo <= size <= hi`` per cluster, from the feasible
    ``labels`` (see the module docstring); returns ``(labels, passes)``.

    Exact up to ``rtol * mean|cost|`` per exchange (float64), i.e. the same optimum a min-cost flow
    solver (or `scipy.optimize.linear_sum_assignment` on expanded slots) finds.
    """
    cost = np.asarray(cost, np.float64)
    n, k = cost.shape
    lab = np.asarray(labels, np.int64).copy()
    counts = np.bincount(lab, minlength=k)
    if counts.min() < lo or counts.max() > hi:
        raise ValueError(f"start assignment has cluster sizes {counts.min()}..{counts.max()}, "
                         f"outside [{lo}, {hi}]")
    eps = rtol * max(1.0, float(np.abs(cost).mean()))
    m = k + 1
    w = np.full((m, m), np.inf)  # [K+1, K+1] edge costs; node K is S
    everyone = np.arange(k)
    w[:k, :k] = _edge_rows(cost, lab, everyone)
    w[everyone, everyone] = np.inf
    for passes in range(1, max_passes + 1):
        counts = np.bincount(lab, minlength=k)
        w[k, :k] = np.where(counts > lo, 0.0, np.inf)  # S -> a: a may give a row away
        w[:k, k] = np.where(counts < hi, 0.0, np.inf)  # b -> S: b may take one more
        dist, pred, cycles = np.zeros(m), np.full(m, -1), []
        for _ in range(m + 1):
            cand = dist[:, None] + w  # [m, m]
            arg = cand.argmin(0)
            best = cand[arg, np.arange(m)]
            upd = best < dist - eps
            if not upd.any():
                return lab, passes
            dist = np.where(upd, best, dist)
            pred = np.where(upd, arg, pred)
            cycles = _pred_cycles(pred)
            if cycles:
                break
        moves = []
        for cyc in cycles:
            for a, b in zip(cyc, cyc[1:] + cyc[:1]):
                if a != k and b != k:
                    rows = np.flatnonzero(lab == a)
                    moves.append((rows[np.argmin(cost[rows, b] - cost[rows, a])], b))
        touched = np.unique([v for cyc in cycles for v in cyc if v != k])
        for row, b in moves:
            lab[row] = b
        # only the touched clusters' members changed: refresh their out-edges (vertex-disjoint cycles)
        if touched.size:
            w[touched, :k] = _edge_rows(cost, lab, touched)
            w[touched, touched] = np.inf
    raise RuntimeError(f"exact_assign: no optimum after {max_passes} passes")


def _sq_dists64(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``[N, K]`` squared distances in float64 (numpy: eager jax ops would compile per call)."""
    d = (r * r).sum(1)[:, None] - 2.0 * (r @ c.T) + (c * c).sum(1)[None, :]
    return np.maximum(d, 0.0)


def _means(r: np.ndarray, lab: np.ndarray, k: int) -> np.ndarray:
    sums = np.zeros((k, r.shape[1]))
    np.add.at(sums, lab, r)
    return sums / np.bincount(lab, minlength=k)[:, None]


def _balanced_level(key, r: jax.Array, k: int, *, max_iter: int, kmeans_iter: int, iterations: int,
                    tau: float, tol: float, n_init: int, slack: int) -> tuple[np.ndarray, np.ndarray]:
    n = r.shape[0]
    caps = capacities(n, k)
    lo, hi = size_band(n, k, slack)
    r64 = np.asarray(r, np.float64)
    scaled_tol = tol * float(np.mean(np.var(r64, axis=0)))
    best = None
    for trial in range(n_init):
        c0, _, _ = fit_kmeans(jax.random.fold_in(key, trial), r, k, max_iter=kmeans_iter, tol=1e-4)
        prices = sinkhorn_prices(sq_dists(r, c0), jnp.asarray(caps, r.dtype), tau, iterations)
        c = np.asarray(c0, np.float64)
        d = _sq_dists64(r64, c)
        lab = capacity_assign(d - np.asarray(prices, np.float64)[None, :], caps)
        prev = None
        for _ in range(max_iter):
            lab, _ = exact_assign(d, lab, lo, hi)
            if prev is not None and np.array_equal(lab, prev):
                break
            prev = lab
            new = _means(r64, lab, k)
            shift = float(((new - c) ** 2).sum())
            c = new
            d = _sq_dists64(r64, c)
            if shift <= scaled_tol:
                lab, _ = exact_assign(d, lab, lo, hi)
                break
        c = _means(r64, lab, k)
        inertia = float(((r64 - c[lab]) ** 2).sum())
        if best is None or inertia < best[2]:
            best = (c.astype(np.float32), lab.astype(np.int32), inertia)
    return best[0], best[1]


def fit_balanced(x: np.ndarray, sizes, *, seed: int, max_iter: int = 100, kmeans_iter: int = 50,
                 sinkhorn_iterations: int = 100, tau: float = 0.1, tol: float = 1e-4, n_init: int = 3,
                 size_slack: int = 1) -> ResidualKMeans:
    """Balanced residual k-means; level ``l`` seeds from ``fold_in(PRNGKey(seed), l)``, trial ``t`` of
    a level from ``fold_in`` of that by ``t``."""
    xn = np.asarray(x, np.float32)
    sizes = check_sizes(sizes, xn.shape[0], "rq_kmeans_balanced")
    key = jax.random.PRNGKey(seed)
    r, books, codes = xn, [], []
    for level, k in enumerate(sizes):
        c, lab = _balanced_level(jax.random.fold_in(key, level), jnp.asarray(r), k, max_iter=max_iter,
                                 kmeans_iter=kmeans_iter, iterations=sinkhorn_iterations, tau=tau, tol=tol,
                                 n_init=n_init, slack=size_slack)
        books.append(c)
        codes.append(lab)
        r = r - c[lab]
    return ResidualKMeans(codebooks=tuple(books), fit_codes=np.stack(codes, 1).astype(np.int32))
