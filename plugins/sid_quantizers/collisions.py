"""Upstream's collision re-assignment (``rq/generate_indices.py``): Sinkhorn on the last level.

A *group* is a set of items with identical codes. For each group, the squared distances of its
members' last-level residuals to the last codebook are scaled to ``[-1, 1]`` (centre
``(max + min) / 2``, amplitude ``max - centre + 1e-5``, over the group's whole matrix), turned into
``Q = exp(-d / eps)`` and balanced by ``iterations`` Sinkhorn sweeps (rows to mass ``1/B``, then
columns to mass ``1/K``); each member takes ``argmax_k Q``. Rounds repeat on the groups that
remain (a new code may hit another item) until there are none or ``rounds`` are spent; leftovers
stay (upstream: "we no longer differentiate them"). The sweeps run in log space in float64, which
gives the same argmax as upstream's float64 products without overflow.
"""

from __future__ import annotations

import numpy as np

__all__ = ["collision_groups", "scale_distances", "sinkhorn_codes", "sinkhorn_dedup"]


def collision_groups(codes: np.ndarray) -> list[np.ndarray]:
    """Row indices of every set of >= 2 rows with equal codes (ascending, groups by first row)."""
    codes = np.asarray(codes)
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(counts)[:-1]
    groups = [g for g in np.split(order, bounds) if g.size > 1]
    return sorted(groups, key=lambda g: int(g[0]))


def scale_distances(d: np.ndarray) -> np.ndarray:
    """Affine map of the matrix ``d`` onto about ``[-1, 1]`` (upstream ``center_distance_for_constraint``)."""
    hi, lo = float(d.max()), float(d.min())
    mid = (hi + lo) / 2.0
    return (d - mid) / (hi - mid + 1e-5)


def sinkhorn_codes(d: np.ndarray, *, eps: float = 0.003, iterations: int = 50) -> np.ndarray:
    """``d [B, K]`` -> ``[B]`` codes: argmax of the Sinkhorn-balanced ``exp(-scaled d / eps)``."""
    b, k = d.shape
    log_q = -scale_distances(np.asarray(d, np.float64)) / eps
    for _ in range(iterations):
        log_q -= np.logaddexp.reduce(log_q, axis=1, keepdims=True) + np.log(b)
        log_q -= np.logaddexp.reduce(log_q, axis=0, keepdims=True) + np.log(k)
    return np.argmax(log_q, axis=1)


def sinkhorn_dedup(fitted, x: np.ndarray, codes: np.ndarray, *, rounds: int = 20, eps: float = 0.003,
                   iterations: int = 50) -> tuple[np.ndarray, int]:
    """Re-assign the last level of colliding rows; returns ``(codes, rounds run)``.

    Args:
        fitted: a `sidcore.interfaces.FittedQuantizer` (its ``distances`` gives the last level's costs).
        x: ``[N, D]`` embeddings the codes belong to.
        codes: ``[N, L]`` codes (not modified).
    """
    codes = np.array(codes, dtype=np.int32, copy=True)
    last = codes.shape[1] - 1
    done = 0
    for _ in range(rounds):
        groups = collision_groups(codes)
        if not groups:
            break
        for g in groups:
            d = fitted.distances(x[g], codes[g], last)
            codes[g, last] = sinkhorn_codes(d, eps=eps, iterations=iterations)
        done += 1
    return codes, done
