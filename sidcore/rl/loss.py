"""The GRPO loss of upstream MiniOneRec (``compute_loss``), its aggregations and the reference sync.

Rows are *completions*: each of the B prompts of a step carries G completions, so a step has
``N = B * G`` rows. Per-token log-probs of the policy come from one teacher-forced forward over
``prompt + completion`` (`completion_batch` builds it on device from the rollout, no host round
trip); the completion mask runs through the first EOS (upstream: ``is_eos`` argmax, pad = eos).

Per token ``t`` of row ``n`` with advantage ``A_n``:

- single iteration (upstream): ``ratio = exp(logp - stop_gradient(logp))`` (= 1, gradient
  ``A * dlogp``), ``l = -(ratio * A - beta * KL)``;
- multi-iteration / clipped (PPO, ``num_iterations > 1``, old log-probs given):
  ``ratio = exp(logp - old)``, ``l = -(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) - beta * KL)``;
- k3 KL to the reference: ``KL = exp(ref - logp) - (ref - logp) - 1`` (0 when ``beta = 0``, and no
  reference forward is run).

Aggregations: ``sequence-mean-token-mean`` (upstream default: mean over rows of each row's masked
token mean), ``dapo`` (one masked token mean over the whole batch), ``gspo`` (the ratio is a
sequence ratio ``exp(mean_t(logp - sg(logp)))`` shared by the row's tokens; then aggregated like the
default).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from sidcore.errors import ConfigError

__all__ = ["AGGREGATIONS", "completion_batch", "completion_mask", "token_logps", "grpo_loss", "make_loss_fn",
           "sync_reference"]

AGGREGATIONS = ("sequence-mean-token-mean", "dapo", "gspo")
Params = Any
Batch = dict[str, jax.Array]


def completion_mask(tokens: jax.Array, eos_id: int) -> jax.Array:
    """``tokens [N, T]`` -> float32 mask ``[N, T]``: 1 up to and including the first EOS (all 1 without
    EOS), 0 after it and on padding ids (< 0)."""
    t_len = tokens.shape[-1]
    is_eos = tokens == eos_id
    first = jnp.where(is_eos.any(-1), jnp.argmax(is_eos, axis=-1), t_len)  # [N]
    keep = (jnp.arange(t_len)[None, :] <= first[:, None]) & (tokens >= 0)
    return keep.astype(jnp.float32)


def completion_batch(input_ids: jax.Array, lengths: jax.Array, tokens: jax.Array, *, pad_id: int,
                     eos_id: int) -> Batch:
    """Teacher-forcing rows for ``G`` completions of each prompt.

    Args:
        input_ids: ``[B, Lp]`` right-padded prompts.
        lengths: ``[B]`` real prompt lengths.
        tokens: ``[B, G, T]`` completions (``-1`` = padding).

    Returns:
        ``input_ids, positions, segment_ids [N, Lp + T]`` (row ``b * G + g`` = prompt ``b`` followed by
        completion ``g``, right-padded), ``label_pos [N, T]`` (the position whose hidden state predicts
        completion token ``t``: ``length - 1 + t``), ``completion [N, T]`` and ``mask [N, T]``.
    """
    b, lp = input_ids.shape
    g, t_len = tokens.shape[1], tokens.shape[2]
    comp = tokens.reshape(b * g, t_len)  # [N, T]
    lens = jnp.repeat(lengths.astype(jnp.int32), g)  # [N]
    slots = jnp.arange(lp + t_len, dtype=jnp.int32)  # [L]
    prompt = jnp.pad(jnp.repeat(input_ids, g, axis=0), ((0, 0), (0, t_len)), constant_values=pad_id)  # [N, L]
    # Token at slot s: the prompt's when s < len, else completion[s - len] while s - len < T.
    off = slots[None, :] - lens[:, None]  # [N, L]
    in_comp = (off >= 0) & (off < t_len)
    comp_tok = jnp.take_along_axis(comp, jnp.clip(off, 0, t_len - 1), axis=1)  # [N, L]
    ids = jnp.where(in_comp, jnp.where(comp_tok >= 0, comp_tok, pad_id), jnp.where(off < 0, prompt, pad_id))
    mask = completion_mask(comp, eos_id)  # [N, T]
    n_real = lens + mask.sum(-1).astype(jnp.int32)  # tokens after the mask's end are never attended to
    seg = (slots[None, :] < jnp.maximum(n_real, lens + 1)[:, None]).astype(jnp.int32)
    return {
        "input_ids": ids.astype(jnp.int32),
        "positions": jnp.broadcast_to(slots, ids.shape),
        "segment_ids": seg,
        "label_pos": lens[:, None] - 1 + jnp.arange(t_len, dtype=jnp.int32)[None, :],
        "completion": jnp.where(comp >= 0, comp, pad_id).astype(jnp.int32),
        "mask": mask,
    }


def token_logps(model: Any, batch: Batch, real_vocab: int, *, fused: bool = True) -> jax.Array:
    """Full-vocabulary log-probs ``[N, T]`` (float32) of the completion tokens under ``model``.

    ``fused``: the vocabulary normaliser comes from the model's chunked ``logsumexp`` and only the
    chosen tokens' logits are gathered (no ``[N, T, V]`` array); otherwise a full log-softmax.
    """
    h = model.hidden(batch["input_ids"], batch["positions"], batch["segment_ids"])  # [N, L, H]
    hl = jnp.take_along_axis(h, batch["label_pos"][..., None], axis=1)  # [N, T, H]
    n, t_len, hd = hl.shape
    tok = batch["completion"]  # [N, T]
    if fused and hasattr(model, "logsumexp"):
        flat = hl.reshape(n * t_len, hd)
        lse = model.logsumexp(flat, real_vocab)  # [N*T]
        tgt = model.logits_at(flat, tok.reshape(n * t_len, 1))[:, 0]  # [N*T]
        return (tgt - lse).reshape(n, t_len)
    logits = model.logits(hl)  # [N, T, V]
    if logits.shape[-1] > real_vocab:
        logits = jnp.where(jnp.arange(logits.shape[-1]) < real_vocab, logits, -jnp.inf)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(logp, tok[..., None], axis=-1)[..., 0]


def grpo_loss(
    logp: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    *,
    ref_logp: jax.Array | None = None,
    old_logp: jax.Array | None = None,
    beta: float = 1e-3,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    aggregation: str = "sequence-mean-token-mean",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Upstream ``compute_loss`` on per-token log-probs ``[N, T]``.

    Args:
        logp: policy log-probs (differentiable).
        advantages: ``[N]``.
        mask: ``[N, T]`` completion mask.
        ref_logp: reference log-probs (needed when ``beta != 0``).
        old_logp: log-probs of the policy that generated the rollouts: given -> clipped ratio.
        epsilon, epsilon_high: clip range ``[1 - epsilon, 1 + (epsilon_high or epsilon)]``.

    Returns:
        (scalar loss, aux): aux ``kl_seq [N]`` (masked token-mean KL per row), ``clip_frac``.
    """
    if aggregation not in AGGREGATIONS:
        raise ConfigError(f"rl.loss_aggregation: unknown '{aggregation}'; choose one of {', '.join(AGGREGATIONS)}")
    base = jax.lax.stop_gradient(logp) if old_logp is None else old_logp
    tokens_per_row = jnp.maximum(mask.sum(-1), 1.0)  # [N]
    log_ratio = logp - base  # [N, T]
    if aggregation == "gspo":
        seq = (log_ratio * mask).sum(-1) / tokens_per_row  # [N]
        log_ratio = jnp.broadcast_to(seq[:, None], logp.shape)
    ratio = jnp.exp(log_ratio)
    adv = advantages[:, None].astype(jnp.float32)  # [N, 1]
    if old_logp is None:
        surrogate = ratio * adv
        clip_frac = jnp.zeros((), jnp.float32)
    else:
        high = epsilon if epsilon_high is None else epsilon_high
        clipped = jnp.clip(ratio, 1.0 - epsilon, 1.0 + high) * adv
        surrogate = jnp.minimum(ratio * adv, clipped)
        clip_frac = ((clipped < ratio * adv) * mask).sum() / jnp.maximum(mask.sum(), 1.0)
    if beta and ref_logp is not None:
        d = ref_logp - logp
        kl = jnp.exp(d) - d - 1.0  # [N, T] k3
        per_token = -(surrogate - beta * kl)
    else:
        kl = jnp.zeros_like(logp)
        per_token = -surrogate
    if aggregation == "dapo":
        loss = (per_token * mask).sum() / jnp.maximum(mask.sum(), 1.0)
    else:
        loss = ((per_token * mask).sum(-1) / tokens_per_row).mean()
    kl_seq = (kl * mask).sum(-1) / tokens_per_row  # [N]
    return loss, {"kl_seq": jax.lax.stop_gradient(kl_seq), "clip_frac": clip_frac}


def make_loss_fn(
    merge: Callable[[Params], Any], *, real_vocab: int, beta: float, epsilon: float = 0.2,
    epsilon_high: float | None = None, aggregation: str = "sequence-mean-token-mean", fused: bool = True,
    logps: Callable[[Any, Batch], jax.Array] | None = None,
) -> Callable[..., tuple[jax.Array, dict[str, jax.Array]]]:
    """``loss(params, batch, ref_params=None) -> (loss, aux)`` over a `completion_batch` with
    ``advantages [N]`` and optionally ``old_logp [N, T]`` (clipped variant) added.

    ``logps(model, batch) -> [N, T]``: the per-token log-probs (default `token_logps` of a
    `completion_batch`; `sidcore.rl.group_forward` gives the shared-prefix one)."""
    if logps is None:
        def logps(model: Any, batch: Batch) -> jax.Array:
            return token_logps(model, batch, real_vocab, fused=fused)

    def loss(params: Params, batch: Batch, ref_params: Params | None = None):
        logp = logps(merge(params), batch)
        ref_logp = None
        if beta and ref_params is not None:
            # the rollout's log-probs are the policy's, never the reference's: its pass runs in full
            ref_batch = {k: v for k, v in batch.items() if k != "rollout_logp"}
            ref_logp = jax.lax.stop_gradient(logps(merge(ref_params), ref_batch))
        value, aux = grpo_loss(logp, batch["advantages"], batch["mask"], ref_logp=ref_logp,
                               old_logp=batch.get("old_logp"), beta=beta, epsilon=epsilon,
                               epsilon_high=epsilon_high, aggregation=aggregation)
        aux["logp"] = jax.lax.stop_gradient(logp)
        return value, aux

    return loss


def sync_reference(params: Params, ref_params: Params, alpha: float) -> Params:
    """TRL's ``SyncRefModelCallback``: ``ref <- alpha * theta + (1 - alpha) * ref`` (leaf dtype kept)."""
    return jax.tree.map(lambda p, r: (alpha * p.astype(jnp.float32) + (1.0 - alpha) * r.astype(jnp.float32))
                        .astype(r.dtype), params, ref_params)
