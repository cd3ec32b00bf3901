"""One RL step as two jits around a host stage: rollout (jit) -> rewards and advantages (host, numpy)
-> update (jit: teacher-forced forward, loss, gradient, optax update).

`RLStep` holds the compiled functions (one compile per prompt bucket length) and returns, per step,
the new params/optimizer state plus everything the telemetry needs. The rewards run on the host
because reward components are plain Python/numpy over strings (`sidcore.interfaces.Reward`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sidcore.errors import ConfigError
from sidcore.interfaces import Reward, RewardGroup
from sidcore.rl.advantages import compute_advantages, zero_advantage_fraction
from sidcore.rl.config import RLConfig
from sidcore.rl.group_forward import distinct_rows, group_batch, group_token_logps
from sidcore.rl.groups import catalog_paths, diversity_metrics, dynamic_pool_size, select_groups, target_paths
from sidcore.rl.loss import completion_batch, completion_mask, make_loss_fn, token_logps
from sidcore.rl.rewards import score_groups
from sidcore.rl.rollout import make_rollout_fn, sids_from_tokens

__all__ = ["RLStep", "make_batch_fns", "make_update_fn", "sid_level_strings"]


def sid_level_strings(tokenizer: Any, vocab_size: int) -> np.ndarray:
    """``[V]`` token string of every id that is a SID level token (``"<x_n>"``), ``""`` otherwise."""
    import re

    pat = re.compile(r"^<[A-Za-z]+_\d+>$")
    toks = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer)))))
    out = np.array([t if isinstance(t, str) and pat.match(t) else "" for t in toks], dtype=object)
    if out.size < vocab_size:
        out = np.concatenate([out, np.array([""] * (vocab_size - out.size), dtype=object)])
    return out.astype(str)


def make_batch_fns(cfg: RLConfig, *, real_vocab: int, pad_id: int, eos_id: int, shared_prefix: bool
                   ) -> tuple[Callable[..., dict], Callable[[Any, dict], jax.Array]]:
    """``(build(input_ids, lengths, tokens) -> batch, logps(model, batch) -> [N, T])`` of the update.

    ``shared_prefix``: one tree row per prompt (`sidcore.rl.group_forward`; the model needs
    `hidden_masked`); otherwise G full rows per prompt (`completion_batch`, upstream's layout).
    """
    g, fused = int(cfg.num_generations), cfg.fused_logprobs
    if shared_prefix:
        def build(input_ids, lengths, tokens):
            return group_batch(input_ids, lengths, tokens, pad_id=pad_id, eos_id=eos_id)

        def logps(m, batch):
            return group_token_logps(m, batch, real_vocab, num_generations=g, fused=fused)
    else:
        def build(input_ids, lengths, tokens):
            return completion_batch(input_ids, lengths, tokens, pad_id=pad_id, eos_id=eos_id)

        def logps(m, batch):
            return token_logps(m, batch, real_vocab, fused=fused)
    return build, logps


def _weights(cfg: RLConfig, tokens: jax.Array, eos_id: int, k: int) -> jax.Array:
    """``[k]`` share of the whole step's loss each micro-batch carries (sums to 1): rows for the per-row
    aggregations, completion tokens for ``dapo`` (a global token mean), so the summed micro losses and
    gradients equal the unsplit step's."""
    b, g, t = tokens.shape
    if cfg.loss_aggregation != "dapo":
        return jnp.full((k,), 1.0 / k, jnp.float32)
    per = completion_mask(tokens.reshape(b * g, t), eos_id).reshape(b // k, k, g * t).sum(axis=(0, 2))
    return per / jnp.maximum(per.sum(), 1.0)


def _micro(x: jax.Array, k: int) -> jax.Array:
    """``[B, ...] -> [k, B / k, ...]``: micro-batch j holds rows j, j + k, ... (strided, so each data
    shard contributes to every micro-batch)."""
    return jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1)


def _unmicro(x: jax.Array) -> jax.Array:
    """Inverse of `_micro` on the leading two axes."""
    x = jnp.swapaxes(x, 0, 1)
    return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def make_update_fn(merge: Callable[[Any], Any], tx: optax.GradientTransformation, cfg: RLConfig, *,
                   real_vocab: int, pad_id: int, eos_id: int, shared_prefix: bool = False, apply: bool = True
                   ) -> Callable[..., tuple[Any, Any, dict]]:
    """``update(params, opt_state, ref_params, input_ids, lengths, tokens, advantages, old_logp)``.

    ``tokens [B, G, T]``, ``advantages [B, G]``; ``ref_params`` None when ``beta == 0``; ``old_logp``
    ``[B * G, T]`` or None for the single-iteration (stop-gradient) ratio. With
    ``rows``: ``(rows [B, U], row_of [B, R])`` from `distinct_rows` (shared-prefix layout only): the
    normalisers run on each prompt's distinct prefixes only (same values). ``rollout_logp [B, G, T]``:
    the rollout's per-token log-probs at these same parameters (shared-prefix layout, single
    iteration): the policy's vocabulary forward pass is skipped (same values). With
    ``rl.gradient_accumulation_steps = k > 1`` the B prompts run as k micro-batches of B / k under
    ``lax.scan`` (one micro-batch's activations live at a time), each loss weighted by its share
    (`_weights`), the gradients summed, then one optimizer update. ``apply=False``: loss and metrics
    only (the RL eval), params and opt_state returned unchanged. Returns (params, opt_state, metrics)
    with metrics ``loss, grad_norm, kl_seq [N], clip_frac``.
    """
    build, logps = make_batch_fns(cfg, real_vocab=real_vocab, pad_id=pad_id, eos_id=eos_id,
                                  shared_prefix=shared_prefix)
    loss_fn = make_loss_fn(merge, real_vocab=real_vocab, beta=cfg.beta, epsilon=cfg.epsilon,
                           epsilon_high=cfg.epsilon_high, aggregation=cfg.loss_aggregation,
                           fused=cfg.fused_logprobs, logps=logps)
    k = int(cfg.gradient_accumulation_steps)

    def one(params, ref_params, input_ids, lengths, tokens, advantages, old_logp, weight, rows=None,
            rollout_logp=None):
        batch = build(input_ids, lengths, tokens)
        if rollout_logp is not None:
            batch["rollout_logp"] = rollout_logp.reshape(-1, tokens.shape[-1])
        batch["advantages"] = advantages.reshape(-1)
        if old_logp is not None:
            batch["old_logp"] = old_logp
        if rows is not None:
            batch["rows"], batch["row_of"] = rows

        def scaled(p):
            value, aux = loss_fn(p, batch, ref_params)
            return value * weight, aux

        if not apply:
            value, aux = scaled(params)
            return value, aux, None
        (value, aux), grads = jax.value_and_grad(scaled, has_aux=True)(params)
        return value, aux, grads

    def update(params, opt_state, ref_params, input_ids, lengths, tokens, advantages, old_logp=None, rows=None,
               rollout_logp=None):
        if k == 1:
            loss, aux, grads = one(params, ref_params, input_ids, lengths, tokens, advantages, old_logp, 1.0, rows,
                                   rollout_logp)
            kl_seq, clip_frac = aux["kl_seq"], aux["clip_frac"]
        else:
            b, g, t = tokens.shape
            w = _weights(cfg, tokens, eos_id, k)
            old = None if old_logp is None else _micro(old_logp.reshape(b, g, t), k)
            rj = None if rows is None else (_micro(rows[0], k), _micro(rows[1], k))
            lj = None if rollout_logp is None else _micro(rollout_logp, k)
            xs = (_micro(input_ids, k), _micro(lengths, k), _micro(tokens, k), _micro(advantages, k), old, w, rj, lj)
            zero = None if not apply else jax.tree.map(jnp.zeros_like, params)

            def body(acc, x):
                ids, lens, toks, adv, o, wj, rj, lj = x
                o = None if o is None else o.reshape(-1, t)
                value, aux, grads = one(params, ref_params, ids, lens, toks, adv, o, wj, rj, lj)
                acc = acc if grads is None else jax.tree.map(jnp.add, acc, grads)
                return acc, (value, aux["kl_seq"].reshape(-1, g), aux["clip_frac"] * wj)

            grads, (losses, kl, clip) = jax.lax.scan(body, zero, xs)
            loss, kl_seq, clip_frac = losses.sum(), _unmicro(kl).reshape(-1), clip.sum()
        metrics = {"loss": loss, "kl_seq": kl_seq, "clip_frac": clip_frac}
        if not apply:
            metrics["grad_norm"] = jnp.zeros((), jnp.float32)
            return params, opt_state, metrics
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics["grad_norm"] = optax.tree.norm(grads)
        return params, opt_state, metrics

    return update


def _regroup(tokens: jax.Array, scores: jax.Array, select: Any, gt: Any, token_lp: Any = None
             ) -> tuple[jax.Array, jax.Array, Any]:
    """Keep the ``select [B, G]`` samples (dynamic_sampling) and write ``gt [B, T]`` over the last
    completion of each group (add_gt; its score becomes NaN: it was not generated). ``token_lp``
    (per-token log-probs, never given with add_gt) follows the selection."""
    if select is not None:
        tokens = jnp.take_along_axis(tokens, select[..., None], axis=1)
        scores = jnp.take_along_axis(scores, select, axis=1)
        if token_lp is not None:
            token_lp = jnp.take_along_axis(token_lp, select[..., None], axis=1)
    if gt is not None:
        tokens = tokens.at[:, -1].set(gt.astype(tokens.dtype))
        scores = scores.at[:, -1].set(jnp.nan)
    return tokens, scores, token_lp


class RLStep:
    """Compiled rollout/update functions of one run plus the host reward stage."""

    def __init__(self, cfg: RLConfig, *, merge: Callable[[Any], Any], tx: optax.GradientTransformation,
                 decoder: Any, rewards: Mapping[str, Reward], tokenizer: Any, real_vocab: int, depth: int,
                 vocab_size: int, param_shardings: Any = None, opt_shardings: Any = None,
                 shared_prefix: bool = False, catalog: Any = None) -> None:
        self.cfg = cfg
        self.rewards = dict(rewards)
        self.weights = {r.name: r.weight for r in cfg.rewards}
        self.depth = depth
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
        self.eos_id = int(tokenizer.eos_token_id)
        self.level_strings = sid_level_strings(tokenizer, vocab_size)
        g = int(cfg.num_generations)
        self.pool = dynamic_pool_size(g) if cfg.dynamic_sampling else g
        self.paths = None
        if cfg.add_gt:
            if catalog is None:
                raise ConfigError("rl.add_gt needs the catalog (its target token paths)")
            self.paths = catalog_paths(catalog, self.eos_id)
        self.shared_prefix = bool(shared_prefix)
        # The policy's log-probs of its own rollout come from the decoder when it can give them and
        # the update runs at the rollout's parameters (one iteration) on completions it generated.
        self.reuse_logps = (self.shared_prefix and cfg.fused_logprobs and cfg.num_iterations == 1
                            and not cfg.add_gt and callable(getattr(decoder, "decode_token_logps", None)))
        self.rollout = jax.jit(make_rollout_fn(merge, real_vocab=real_vocab, decoder=decoder,
                                               num_generations=self.pool, token_logps=self.reuse_logps))
        self.regroup = jax.jit(_regroup)
        out_sh = None if param_shardings is None else (param_shardings, opt_shardings, None)
        kw = dict(real_vocab=real_vocab, pad_id=self.pad_id, eos_id=self.eos_id, shared_prefix=self.shared_prefix)
        self.update = jax.jit(make_update_fn(merge, tx, cfg, **kw), donate_argnums=(0, 1), out_shardings=out_sh)
        loss_only = make_update_fn(merge, tx, cfg, apply=False, **kw)
        self.eval_loss = jax.jit(lambda p, ref, *a: loss_only(p, None, ref, *a)[2])

        build, logps = make_batch_fns(cfg, real_vocab=real_vocab, pad_id=self.pad_id, eos_id=self.eos_id,
                                      shared_prefix=shared_prefix)

        def old_logp(params, input_ids, lengths, tokens, rows=None):
            batch = build(input_ids, lengths, tokens)
            if rows is not None:
                batch["rows"], batch["row_of"] = rows
            return logps(merge(params), batch)

        self.old_logp = jax.jit(old_logp)

    def normaliser_rows(self, shape: tuple[int, ...], rows: Any) -> int:
        """Vocabulary normalisers one forward pass of the update computes (the step's FLOP count)."""
        b, g, t = shape
        if rows is not None:
            return int(rows[0].size)
        return b + b * g * (t - 1) if self.shared_prefix else b * g * t

    def distinct(self, host_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """`distinct_rows` of this step's completions (shared-prefix layout with T >= 2), else None."""
        if not self.shared_prefix or host_tokens.shape[-1] < 2:
            return None
        return distinct_rows(host_tokens)

    def groups(self, sids: np.ndarray, scores: np.ndarray, examples: Sequence[Any]) -> list[RewardGroup]:
        return [RewardGroup(sample_id=int(e.sample_id), target_sid=e.target_sid, completions=tuple(sids[i].tolist()),
                            scores=scores[i], target_item=e.target_item,
                            history_items=tuple(getattr(e, "history_items", ()))) for i, e in enumerate(examples)]

    def rollout_groups(self, params: Any, input_ids: Any, lengths: Any, examples: Sequence[Any], rng: jax.Array,
                       to_host: Callable[[Any], Any]) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, Any]:
        """Rollout -> (optional) dynamic selection and add_gt -> ``(tokens dev, host tokens, sids, scores,
        per-token log-probs dev or None)``."""
        cfg = self.cfg
        token_lp = None
        if self.reuse_logps:
            tokens, scores, token_lp = self.rollout(params, input_ids, lengths, rng)
        else:
            tokens, scores = self.rollout(params, input_ids, lengths, rng)
        select = gt = None
        if cfg.dynamic_sampling:
            pool = sids_from_tokens(np.asarray(to_host(tokens)), self.level_strings, self.depth)  # [B, G']
            select = select_groups(pool, [e.target_sid for e in examples], cfg.num_generations)
        if self.paths is not None:
            gt = target_paths(self.paths, [e.target_sid for e in examples], int(tokens.shape[-1]))
        if select is not None or gt is not None:
            tokens, scores, token_lp = self.regroup(tokens, scores, select, gt, token_lp)
        host_tokens, host_scores = (np.asarray(x) for x in to_host((tokens, scores)))
        if cfg.rollout == "beam" and cfg.temperature != 1.0:
            host_scores = host_scores / np.float32(cfg.temperature)  # upstream's warper: scores / T, same beams
        sids = sids_from_tokens(host_tokens, self.level_strings, self.depth)  # [B, G]
        return tokens, host_tokens, sids, host_scores, token_lp

    def __call__(self, params: Any, opt_state: Any, ref_params: Any, input_ids: Any, lengths: Any,
                 examples: Sequence[Any], rng: jax.Array, to_host: Callable[[Any], Any] = jax.device_get,
                 *, train: bool = True) -> tuple[Any, Any, dict[str, Any]]:
        """Run one step on prompts ``input_ids [B, Lp]`` (device arrays) of ``examples`` (host records).

        ``train=False``: the same rollout, rewards and loss without an update (upstream's RL eval).
        """
        cfg = self.cfg
        t0 = time.perf_counter()
        tokens, host_tokens, sids, host_scores, token_lp = self.rollout_groups(params, input_ids, lengths, examples,
                                                                               rng, to_host)
        t1 = time.perf_counter()
        total, per = score_groups(self.rewards, self.weights, self.groups(sids, host_scores, examples))
        adv = compute_advantages(total, cfg.advantage, eps=cfg.advantage_eps, ddof=cfg.advantage_ddof)
        t2 = time.perf_counter()
        adv_dev = np.asarray(adv)  # identical on every process (all of them score the gathered rollouts)
        rows = self.distinct(host_tokens)
        old = None
        if cfg.num_iterations > 1 and train:
            old = self.old_logp(params, input_ids, lengths, tokens, rows)
        metrics: dict[str, Any] = {}
        if train:
            for _ in range(cfg.num_iterations):
                params, opt_state, metrics = self.update(params, opt_state, ref_params, input_ids, lengths, tokens,
                                                         adv_dev, old, rows, token_lp)
        else:
            metrics = self.eval_loss(params, ref_params, input_ids, lengths, tokens, adv_dev, None, rows, token_lp)
        metrics = {k: np.asarray(v) for k, v in to_host(metrics).items()}
        t3 = time.perf_counter()
        info = {
            "metrics": metrics, "rewards": total, "per_reward": per, "advantages": adv, "sids": sids,
            "zero_adv_frac": zero_advantage_fraction(total),
            "diversity": diversity_metrics(sids, host_tokens, eos_id=self.eos_id, pad_id=self.pad_id),
            "rollout_time": t1 - t0, "reward_time": t2 - t1, "update_time": t3 - t2,
            "normaliser_rows": self.normaliser_rows(host_tokens.shape, rows),
            # vocabulary passes over those rows: policy forward (unless the rollout's log-probs are
            # reused), the backward's recomputed logits, dh and dW, and the reference forward (beta > 0)
            "vocab_passes": (0 if token_lp is not None else 1) + 3 + (1 if cfg.beta and ref_params is not None else 0),
        }
        return params, opt_state, info
