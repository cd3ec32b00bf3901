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
import numpy as np
import optax

from sidcore.interfaces import Reward, RewardGroup
from sidcore.rl.advantages import compute_advantages, zero_advantage_fraction
from sidcore.rl.config import RLConfig
from sidcore.rl.group_forward import group_batch, group_token_logps
from sidcore.rl.loss import completion_batch, make_loss_fn, token_logps
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


def make_update_fn(merge: Callable[[Any], Any], tx: optax.GradientTransformation, cfg: RLConfig, *,
                   real_vocab: int, pad_id: int, eos_id: int, shared_prefix: bool = False
                   ) -> Callable[..., tuple[Any, Any, dict]]:
    """``update(params, opt_state, ref_params, input_ids, lengths, tokens, advantages, old_logp)``.

    ``tokens [B, G, T]``, ``advantages [B, G]``; ``ref_params`` None when ``beta == 0``; ``old_logp``
    None for the single-iteration (stop-gradient) ratio. Returns (params, opt_state, metrics) with
    metrics ``loss, grad_norm, kl_seq [N], clip_frac``.
    """
    build, logps = make_batch_fns(cfg, real_vocab=real_vocab, pad_id=pad_id, eos_id=eos_id,
                                  shared_prefix=shared_prefix)
    loss_fn = make_loss_fn(merge, real_vocab=real_vocab, beta=cfg.beta, epsilon=cfg.epsilon,
                           epsilon_high=cfg.epsilon_high, aggregation=cfg.loss_aggregation,
                           fused=cfg.fused_logprobs, logps=logps)

    def update(params, opt_state, ref_params, input_ids, lengths, tokens, advantages, old_logp=None):
        batch = build(input_ids, lengths, tokens)
        batch["advantages"] = advantages.reshape(-1)
        if old_logp is not None:
            batch["old_logp"] = old_logp
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, ref_params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, {"loss": loss, "grad_norm": optax.tree.norm(grads), "kl_seq": aux["kl_seq"],
                                   "clip_frac": aux["clip_frac"]}

    return update


class RLStep:
    """Compiled rollout/update functions of one run plus the host reward stage."""

    def __init__(self, cfg: RLConfig, *, merge: Callable[[Any], Any], tx: optax.GradientTransformation,
                 decoder: Any, rewards: Mapping[str, Reward], tokenizer: Any, real_vocab: int, depth: int,
                 vocab_size: int, param_shardings: Any = None, opt_shardings: Any = None,
                 shared_prefix: bool = False) -> None:
        self.cfg = cfg
        self.rewards = dict(rewards)
        self.weights = {r.name: r.weight for r in cfg.rewards}
        self.depth = depth
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
        self.eos_id = int(tokenizer.eos_token_id)
        self.level_strings = sid_level_strings(tokenizer, vocab_size)
        self.rollout = jax.jit(make_rollout_fn(merge, real_vocab=real_vocab, decoder=decoder,
                                               num_generations=cfg.num_generations))
        out_sh = None if param_shardings is None else (param_shardings, opt_shardings, None)
        self.shared_prefix = bool(shared_prefix)
        self.update = jax.jit(make_update_fn(merge, tx, cfg, real_vocab=real_vocab, pad_id=self.pad_id,
                                             eos_id=self.eos_id, shared_prefix=self.shared_prefix),
                              donate_argnums=(0, 1), out_shardings=out_sh)

        build, logps = make_batch_fns(cfg, real_vocab=real_vocab, pad_id=self.pad_id, eos_id=self.eos_id,
                                      shared_prefix=shared_prefix)

        def old_logp(params, input_ids, lengths, tokens):
            return logps(merge(params), build(input_ids, lengths, tokens))

        self.old_logp = jax.jit(old_logp)

    def groups(self, sids: np.ndarray, scores: np.ndarray, examples: Sequence[Any]) -> list[RewardGroup]:
        return [RewardGroup(sample_id=int(e.sample_id), target_sid=e.target_sid, completions=tuple(sids[i].tolist()),
                            scores=scores[i], target_item=e.target_item,
                            history_items=tuple(getattr(e, "history_items", ()))) for i, e in enumerate(examples)]

    def __call__(self, params: Any, opt_state: Any, ref_params: Any, input_ids: Any, lengths: Any,
                 examples: Sequence[Any], rng: jax.Array, to_host: Callable[[Any], Any] = jax.device_get
                 ) -> tuple[Any, Any, dict[str, Any]]:
        """Run one step on prompts ``input_ids [B, Lp]`` (device arrays) of ``examples`` (host records)."""
        cfg = self.cfg
        t0 = time.perf_counter()
        tokens, scores = self.rollout(params, input_ids, lengths, rng)
        host_tokens, host_scores = (np.asarray(x) for x in to_host((tokens, scores)))
        t1 = time.perf_counter()
        sids = sids_from_tokens(host_tokens, self.level_strings, self.depth)  # [B, G]
        total, per = score_groups(self.rewards, self.weights, self.groups(sids, host_scores, examples))
        adv = compute_advantages(total, cfg.advantage, eps=cfg.advantage_eps, ddof=cfg.advantage_ddof)
        t2 = time.perf_counter()
        adv_dev = np.asarray(adv)  # identical on every process (all of them score the gathered rollouts)
        old = None
        if cfg.num_iterations > 1:
            old = self.old_logp(params, input_ids, lengths, tokens)
        metrics: dict[str, Any] = {}
        for _ in range(cfg.num_iterations):
            params, opt_state, metrics = self.update(params, opt_state, ref_params, input_ids, lengths, tokens,
                                                     adv_dev, old)
        metrics = {k: np.asarray(v) for k, v in to_host(metrics).items()}
        t3 = time.perf_counter()
        info = {
            "metrics": metrics, "rewards": total, "per_reward": per, "advantages": adv, "sids": sids,
            "zero_adv_frac": zero_advantage_fraction(total),
            "rollout_time": t1 - t0, "reward_time": t2 - t1, "update_time": t3 - t2,
        }
        return params, opt_state, info
