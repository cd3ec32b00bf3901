"""Upstream ``sasrec.py``'s training loss and full-ranking metrics (jax, pure functions).

- ``bce``: ``BCEWithLogitsLoss`` over the target logit (label 1) and one uniformly drawn negative
  item's logit (label 0), averaged over the ``2B`` scores.
- ``ce``: ``CrossEntropyLoss`` over all ``item_num`` logits.
- DRO term (``alpha > 0``): with item propensities ``ps = ((count + 1) / sum) ** 0.05`` of the
  training targets, ``log(sum_j exp(ps_j s_j^2 / beta) - exp(ps_t s_t^2 / beta) + exp(ps_t (s_t - 1)^2 / beta)
  + 1e-24)`` per row, averaged and added with weight ``alpha`` (upstream computes it in float64
  because ``ps`` is a float64 tensor; here float32).
- Metrics: the target's rank among all items (number of items scored strictly higher; upstream's
  double argsort orders exact ties arbitrarily), ``HR@K = rank < K``, ``NDCG@K = 1/log2(rank + 2)``.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["TOPK", "draw_negatives", "loss_value", "metrics_from_ranks", "propensity", "target_ranks"]

TOPK = (1, 3, 5, 10, 20, 50)
"""Cut-offs reported (upstream prints 1, 3, 5, 10, 20; 50 matches sid's own table)."""


def propensity(targets: np.ndarray, item_num: int) -> np.ndarray:
    """``[item_num]`` float32 upstream ``calcu_propensity_score`` of the training targets."""
    counts = np.bincount(np.asarray(targets, np.int64), minlength=item_num)[:item_num].astype(np.float64)
    ps = (counts + 1.0) / (counts + 1.0).sum()
    return np.power(ps, 0.05).astype(np.float32)


def draw_negatives(key: jax.Array, targets: jax.Array, item_num: int) -> jax.Array:
    """``[B]`` items drawn uniformly from ``0..item_num-1`` excluding each row's target (upstream
    redraws ``np.random.randint(item_num)`` until it differs; same distribution)."""
    r = jax.random.randint(key, targets.shape, 0, item_num - 1)
    return r + (r >= targets).astype(r.dtype)


def loss_value(logits: jax.Array, targets: jax.Array, negatives: jax.Array | None, ps: jax.Array, *,
               loss_type: str, alpha: float, beta: float) -> jax.Array:
    """Upstream's ``loss_all`` for ``logits [B, N]``, ``targets [B]``, ``negatives [B]`` (bce only)."""
    pos = jnp.take_along_axis(logits, targets[:, None], axis=1)[:, 0]  # [B]
    if loss_type == "bce":
        neg = jnp.take_along_axis(logits, negatives[:, None], axis=1)[:, 0]
        loss = (jax.nn.softplus(-pos).sum() + jax.nn.softplus(neg).sum()) / (2 * pos.shape[0])
    elif loss_type == "ce":
        loss = (jax.nn.logsumexp(logits, axis=1) - pos).mean()
    else:
        raise ValueError(f"loss_type must be bce or ce, got {loss_type!r}")
    if alpha == 0.0:
        return loss
    ps_t = ps[targets]
    inner = (jnp.exp(logits * logits * ps[None, :] / beta).sum(1) - jnp.exp(pos * pos * ps_t / beta)
             + jnp.exp((pos - 1.0) * (pos - 1.0) * ps_t / beta))
    return loss + alpha * jnp.log(inner + 1e-24).mean()


def target_ranks(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """``[B]`` 0-based rank of each target among all items (items scored strictly higher)."""
    pos = jnp.take_along_axis(logits, targets[:, None], axis=1)
    return (logits > pos).sum(1)


def metrics_from_ranks(ranks: np.ndarray, topk: Sequence[int] = TOPK) -> tuple[dict[str, float], list[dict[str, float]]]:
    """``({"hr@K": mean, "ndcg@K": mean}, per-row values)`` from 0-based ranks (per-row values feed
    the standard errors)."""
    ranks = np.asarray(ranks, np.int64)
    gain = 1.0 / np.log2(ranks + 2.0)
    cols: dict[str, np.ndarray] = {}
    for k in topk:
        cols[f"hr@{k}"] = (ranks < k).astype(np.float64)
    for k in topk:
        cols[f"ndcg@{k}"] = np.where(ranks < k, gain, 0.0)
    means = {name: float(v.mean()) if len(v) else 0.0 for name, v in cols.items()}
    rows = [{name: float(v[i]) for name, v in cols.items()} for i in range(len(ranks))]
    return means, rows
