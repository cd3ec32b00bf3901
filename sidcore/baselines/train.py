"""Training loop of ``sid baseline`` (upstream ``sasrec.py``'s ``main``), in jax.

Per epoch the training rows are shuffled and cut into ``batch_size`` batches (the last one may be
smaller: two compiled shapes). Each step: dropout on, logits, `sidcore.baselines.losses.loss_value`,
Adam with ``weight_decay = l2_decay`` added to the gradient (``torch.optim.Adam``'s coupled L2:
``add_decayed_weights`` before ``scale_by_adam``). Every ``eval_num`` epochs the selection split is
ranked (dropout off) and the model with the best NDCG@20 is kept; after more than ``early_stop``
evaluations without improvement training stops (upstream's rule). Without a selection split the
last model is kept. The kept model is then ranked on the test split.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sidcore.baselines.config import BaselineConfig
from sidcore.baselines.data import Sequences
from sidcore.baselines.losses import TOPK, draw_negatives, loss_value, metrics_from_ranks, propensity, target_ranks
from sidcore.baselines.models import build_model
from sidcore.errors import TrainingError

__all__ = ["EVAL_BATCH", "evaluate", "make_optimizer", "make_train_step", "train_baseline"]

log = logging.getLogger(__name__)
EVAL_BATCH = 1024  # upstream's evaluation batch


def make_optimizer(cfg: BaselineConfig) -> optax.GradientTransformation:
    """``torch.optim.Adam(lr, eps=1e-8, weight_decay=l2_decay)``."""
    return optax.chain(optax.add_decayed_weights(cfg.l2_decay), optax.scale_by_adam(eps=1e-8), optax.scale(-cfg.lr))


def make_train_step(graphdef: Any, cfg: BaselineConfig, item_num: int, tx: optax.GradientTransformation) -> Callable:
    """``(params, opt_state, seq, lengths, targets, ps, key) -> (params, opt_state, loss)`` (pure)."""

    def loss_fn(params: Any, seq: jax.Array, lengths: jax.Array, targets: jax.Array, ps: jax.Array,
                key: jax.Array) -> jax.Array:
        k_drop, k_neg = jax.random.split(key)
        logits = nnx.merge(graphdef, params)(seq, lengths, dropout_key=k_drop)
        neg = draw_negatives(k_neg, targets, item_num) if cfg.loss_type == "bce" else None
        return loss_value(logits, targets, neg, ps, loss_type=cfg.loss_type, alpha=cfg.alpha, beta=cfg.beta)

    def step(params: Any, opt_state: Any, seq: jax.Array, lengths: jax.Array, targets: jax.Array, ps: jax.Array,
             key: jax.Array) -> tuple[Any, Any, jax.Array]:
        loss, grads = jax.value_and_grad(loss_fn)(params, seq, lengths, targets, ps, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def _rank_fn(graphdef: Any) -> Callable:
    def ranks(params: Any, seq: jax.Array, lengths: jax.Array, targets: jax.Array) -> jax.Array:
        return target_ranks(nnx.merge(graphdef, params)(seq, lengths), targets)

    return jax.jit(ranks)


def evaluate(rank_fn: Callable, params: Any, data: Sequences) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Full-ranking HR/NDCG@`TOPK` over every row of ``data`` (batches of `EVAL_BATCH`, the last padded)."""
    def take(a: np.ndarray, start: int, n: int, pad: int) -> np.ndarray:
        part = a[start: start + n]
        return np.concatenate([part, np.repeat(part[-1:], pad, 0)]) if pad else part

    out = []
    for i in range(0, len(data), EVAL_BATCH):
        n = min(EVAL_BATCH, len(data) - i)
        pad = EVAL_BATCH - n if len(data) > EVAL_BATCH else 0  # one compiled shape for big splits
        r = rank_fn(params, *(take(a, i, n, pad) for a in (data.seq, data.lengths, data.targets)))
        out.append(np.asarray(r)[:n])
    return metrics_from_ranks(np.concatenate(out) if out else np.zeros(0, np.int64))


def train_baseline(cfg: BaselineConfig, *, train: Sequences, select: Sequences | None, test: Sequences,
                   item_num: int, on_record: Callable[[dict[str, Any]], None] = lambda r: None
                   ) -> tuple[nnx.Module, dict[str, Any]]:
    """Train ``cfg.model``; returns the kept model and ``{"best_epoch", "epochs_run", "select", "test",
    "test_rows", "seconds"}`` (``select``/``test``: metric means and per-row values)."""
    for name, part in (("train", train), ("select", select), ("test", test)):
        if part is not None and part.seq.shape[1] != cfg.seq_len:
            raise ValueError(f"{name} rows are {part.seq.shape[1]} items wide, the model's window is {cfg.seq_len}")
    model = build_model(cfg.model, item_num=item_num, seq_len=cfg.seq_len, hidden=cfg.hidden_factor,
                        dropout_rate=cfg.dropout_rate, seed=cfg.seed, num_heads=cfg.num_heads,
                        num_filters=cfg.num_filters, filter_sizes=cfg.filter_sizes)
    graphdef, params = nnx.split(model, nnx.Param)
    tx = make_optimizer(cfg)
    opt_state = tx.init(params)
    step = jax.jit(make_train_step(graphdef, cfg, item_num, tx), donate_argnums=(0, 1))
    rank_fn = _rank_fn(graphdef)
    ps = jnp.asarray(propensity(train.targets, item_num))
    rng = np.random.default_rng(cfg.seed)
    key = jax.random.PRNGKey(cfg.seed)
    n = len(train)
    best = {"ndcg": -1.0, "epoch": -1, "params": None, "metrics": None}
    bad_evals, total_step, t0 = 0, 0, time.perf_counter()
    epoch = -1
    for epoch in range(cfg.epochs):
        order = rng.permutation(n)
        losses, t_epoch = [], time.perf_counter()
        for s in range(0, n, cfg.batch_size):
            idx = order[s: s + cfg.batch_size]
            key, sub = jax.random.split(key)
            params, opt_state, loss = step(params, opt_state, train.seq[idx], train.lengths[idx],
                                           train.targets[idx], ps, sub)
            losses.append(loss)
            total_step += 1
        mean_loss = float(np.mean(jax.device_get(losses)))
        if not np.isfinite(mean_loss):
            raise TrainingError(f"baseline {cfg.model}: non-finite training loss at epoch {epoch + 1} "
                                "(lower --lr or --alpha)")
        rec: dict[str, Any] = {"step": total_step, "epoch": epoch + 1, "train/loss": mean_loss,
                               "train/step_time_sec": (time.perf_counter() - t_epoch) / max(1, len(losses))}
        stop = False
        if select is not None and (epoch + 1) % cfg.eval_num == 0:
            means, rows = evaluate(rank_fn, params, select)
            rec.update({f"eval/{k}": v for k, v in means.items()})
            if means["ndcg@20"] > best["ndcg"]:
                best = {"ndcg": means["ndcg@20"], "epoch": epoch + 1, "params": jax.tree.map(jnp.copy, params),
                        "metrics": (means, rows)}
                bad_evals = 0
            else:
                bad_evals += 1
                stop = bad_evals > cfg.early_stop
        on_record(rec)
        log.info("baseline %s epoch %d loss %.4f%s", cfg.model, epoch + 1, mean_loss,
                 f" select ndcg@20 {rec['eval/ndcg@20']:.4f}" if "eval/ndcg@20" in rec else "")
        if stop:
            break
    kept = best["params"] if best["params"] is not None else params
    test_means, test_rows = evaluate(rank_fn, kept, test)
    nnx.update(model, kept)
    info = {"best_epoch": best["epoch"] if best["params"] is not None else epoch + 1, "epochs_run": epoch + 1,
            "steps": total_step, "select": best["metrics"], "test": (test_means, test_rows),
            "seconds": time.perf_counter() - t0, "topk": list(TOPK)}
    return model, info
