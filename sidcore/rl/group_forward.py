"""Per-token log-probs of G completions per prompt with the prompt computed once (shared prefix).

The full-row path (`sidcore.rl.loss.completion_batch` + `token_logps`) runs ``B * G`` rows of
``prompt + completion``: every prompt is recomputed G times although the rows of a group differ
only in their few completion tokens. Here each prompt becomes **one** row holding the prompt and,
after it, the G completions side by side (a tree)::

    slots:     [ prompt (Lp, right-padded) | c_1[0..T-2] | c_2[0..T-2] | ... | c_G[0..T-2] ]
    positions:   0 .. Lp-1                   len .. len+T-2 (the same for each completion)

under an explicit attention mask: prompt tokens attend causally to the real prompt tokens;
completion token ``t`` of completion ``g`` attends to the real prompt tokens and to tokens
``0..t`` of completion ``g`` only. That is exactly the context each token has in its own full row
(same keys, same RoPE positions), so the log-probs are the full-row ones up to float rounding
(tested, with the gradients). Only ``T - 1`` tokens per completion are fed: the hidden state
predicting completion token 0 is the prompt's last one (shared by the G completions, so its
vocabulary normaliser is computed once per prompt) and the last token predicts nothing.

Costs per step: ``B * (Lp + G * (T - 1))`` tokens instead of ``B * G * (Lp + T)``, and
``B + B * G * (T - 1)`` vocabulary normalisers instead of ``B * G * T``.

Distinct prefixes: beams of one prompt share prefixes (on the bench shape 18 distinct first SID
tokens and 47 distinct two-token prefixes among 4 x 16 beams), and a hidden state depends only on
the prompt and its prefix. `distinct_rows` (numpy, on the host, from the rollout tokens) lists each
prompt's distinct prefixes, padded to a bucket so shapes stay static; with it
`group_token_logps` runs the vocabulary normaliser (the update's dominant cost: forward, backward
and the reference pass) on those rows only and reads every row's value from its representative.
Same function of the parameters, so the same loss and gradients up to float rounding (tested).

Known log-probs: the rollout that produced the completions already computed each token's
full-vocabulary log-prob at the same parameters (the beam scores are their sums). With
``batch["rollout_logp"] [N, T]`` the normaliser of every row is ``logit(next token) - logp``,
taken as a constant, and only the backward scans the vocabulary
(`sidcore.model.lse.logsumexp_given`): one vocabulary pass fewer per step, the same values up to
the rounding difference between the decode and teacher-forced paths (tested).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sidcore.rl.loss import completion_mask

__all__ = ["distinct_rows", "group_batch", "group_token_logps", "supports_group_forward"]

Batch = dict[str, jax.Array]


def supports_group_forward(model: Any) -> bool:
    """The model takes an explicit attention mask (`Qwen2ForCausalLM.hidden_masked`)."""
    return hasattr(model, "hidden_masked")


def group_batch(input_ids: jax.Array, lengths: jax.Array, tokens: jax.Array, *, pad_id: int,
                eos_id: int) -> Batch:
    """One tree row per prompt.

    Args:
        input_ids: ``[B, Lp]`` right-padded prompts.
        lengths: ``[B]`` real prompt lengths.
        tokens: ``[B, G, T]`` completions (``-1`` = padding), ``T >= 1``.

    Returns:
        ``input_ids, positions [B, S]`` and ``attn [B, S, S]`` (``S = Lp + G * (T - 1)``),
        ``lengths [B]``, ``completion [N, T]`` and ``mask [N, T]`` (``N = B * G``, row ``b * G + g``
        as in `completion_batch`).
    """
    b, lp = input_ids.shape
    g, t_len = tokens.shape[1], tokens.shape[2]
    q = t_len - 1  # completion tokens fed per completion
    lens = lengths.astype(jnp.int32)
    comp = jnp.where(tokens >= 0, tokens, pad_id).astype(jnp.int32)  # [B, G, T]
    fed = comp[:, :, :q].reshape(b, g * q)  # [B, G*q]
    ids = jnp.concatenate([input_ids.astype(jnp.int32), fed], axis=1)  # [B, S]
    s = lp + g * q
    slot = jnp.arange(s, dtype=jnp.int32)
    is_prompt = slot < lp  # [S]
    step = jnp.where(is_prompt, 0, (slot - lp) % max(q, 1))  # t of a completion slot
    branch = jnp.where(is_prompt, -1, (slot - lp) // max(q, 1))  # g of a completion slot, -1 prompt
    positions = jnp.where(is_prompt[None, :], slot[None, :], lens[:, None] + step[None, :])  # [B, S]
    real_prompt = is_prompt[None, :] & (slot[None, :] < lens[:, None])  # [B, S] keys every token may see
    causal = slot[None, :] <= slot[:, None]  # [S, S] (query, key)
    see_prompt = real_prompt[:, None, :] & (~is_prompt[:, None] | causal)[None]  # [B, S, S]
    same_branch = (branch[:, None] == branch[None, :]) & (branch[:, None] >= 0)  # both in completion g
    attn = see_prompt | (same_branch & (step[None, :] <= step[:, None]))[None]
    attn = attn | jnp.eye(s, dtype=bool)[None]  # a padding slot sees itself (no all-masked row)
    flat = tokens.reshape(b * g, t_len)
    return {"input_ids": ids, "positions": positions, "attn": attn, "lengths": lens,
            "completion": comp.reshape(b * g, t_len), "mask": completion_mask(flat, eos_id)}


def distinct_rows(tokens: np.ndarray, bucket: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Representative normaliser rows of each prompt of a `group_batch`.

    A prompt's ``R = 1 + G * (T - 1)`` normaliser rows are its last prompt state (row 0) and the
    state after token ``t`` of completion ``g`` (row ``1 + g * (T - 1) + t``); rows whose prefixes
    are equal have equal states. Kept per prompt, so the rows stay on their prompt's data shard.

    Args:
        tokens: ``[B, G, T]`` host completions (``-1`` = padding), ``T >= 2``.
        bucket: the representative count is padded to a multiple of this (and at most ``R``), so a
            run compiles a few shapes, not one per step.

    Returns:
        ``rows [B, U]`` (each prompt's distinct rows, padding repeats row 0) and ``row_of [B, R]``
        (each row's position in ``rows``).
    """
    tokens = np.asarray(tokens)
    b, g, t_len = tokens.shape
    q = t_len - 1
    n_rows = 1 + g * q
    reps: list[list[int]] = []
    row_of = np.zeros((b, n_rows), np.int32)
    for i in range(b):
        seen: dict[bytes, int] = {}
        rep = [0]
        for gi in range(g):
            for ti in range(q):
                key = tokens[i, gi, :ti + 1].tobytes()
                at = seen.get(key)
                if at is None:
                    at = seen[key] = len(rep)
                    rep.append(1 + gi * q + ti)
                row_of[i, 1 + gi * q + ti] = at
        reps.append(rep)
    u = min(n_rows, -(-max(len(r) for r in reps) // bucket) * bucket)
    rows = np.zeros((b, u), np.int32)
    for i, rep in enumerate(reps):
        rows[i, :len(rep)] = rep
    return rows, row_of


def _logp_rows(model: Any, h: jax.Array, tok: jax.Array, real_vocab: int, fused: bool) -> jax.Array:
    """Log-probs ``[R, M]`` of tokens ``tok [R, M]`` under hidden states ``h [R, H]``."""
    if fused and hasattr(model, "logsumexp"):
        return model.logits_at(h, tok) - model.logsumexp(h, real_vocab)[:, None]
    logits = model.logits(h)  # [R, V]
    if logits.shape[-1] > real_vocab:
        logits = jnp.where(jnp.arange(logits.shape[-1]) < real_vocab, logits, -jnp.inf)
    return jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), tok, axis=-1)


def group_token_logps(model: Any, batch: Batch, real_vocab: int, *, num_generations: int,
                      fused: bool = True) -> jax.Array:
    """Full-vocabulary log-probs ``[N, T]`` (float32) of the completions of a `group_batch`."""
    h = model.hidden_masked(batch["input_ids"], batch["positions"], batch["attn"])  # [B, S, H]
    b = h.shape[0]
    g = int(num_generations)
    comp = batch["completion"].reshape(b, g, -1)  # [B, G, T]
    t_len = comp.shape[-1]
    q = t_len - 1
    lp = h.shape[1] - g * q
    last = jnp.take_along_axis(h, (batch["lengths"] - 1)[:, None, None], axis=1)[:, 0]  # [B, H]
    if q == 0:
        return _logp_rows(model, last, comp[:, :, 0], real_vocab, fused).reshape(b * g, 1)
    hc = h[:, lp:].reshape(b * g * q, h.shape[-1])  # [N*q, H]: the state after completion token t
    rest_tok = comp[:, :, 1:].reshape(b * g * q, 1)
    if not (fused and hasattr(model, "logsumexp")):
        first = _logp_rows(model, last, comp[:, :, 0], real_vocab, fused)  # [B, G]
        rest = _logp_rows(model, hc, rest_tok, real_vocab, fused)  # [N*q, 1]
        return jnp.concatenate([first.reshape(b * g, 1), rest.reshape(b * g, q)], axis=1)
    # One normaliser pass over each prompt's R = 1 + G*q rows together (its last prompt state, shared
    # by the G completions' first tokens, then the completion states): one vocabulary scan, one [V, H]
    # gradient. With `rows`, only each prompt's distinct prefixes are scanned.
    local = jnp.concatenate([last[:, None], hc.reshape(b, g * q, -1)], axis=1)  # [B, R, H]
    rep = local if "rows" not in batch else jnp.take_along_axis(local, batch["rows"][..., None], axis=1)
    flat = rep.reshape(-1, rep.shape[-1])  # [B * U, H]
    given = batch.get("rollout_logp")
    if given is not None and hasattr(model, "logsumexp_given"):
        # The rollout computed these log-probs at these parameters: lse = z(token) - logp, no forward pass.
        next_tok = jnp.concatenate([comp[:, :1, 0], comp[:, :, 1:].reshape(b, g * q)], axis=1)  # [B, R]
        given = given.reshape(b, g, t_len)
        next_lp = jnp.concatenate([given[:, :1, 0], given[:, :, 1:].reshape(b, g * q)], axis=1)  # [B, R]
        lse_known = model.logits_at(local.reshape(-1, local.shape[-1]), next_tok.reshape(-1, 1))[:, 0]
        lse_known = lse_known.reshape(b, -1) - next_lp  # [B, R]
        if "rows" in batch:
            lse_known = jnp.take_along_axis(lse_known, batch["rows"], axis=1)
        lse_rep = model.logsumexp_given(flat, lse_known.reshape(-1), real_vocab)
    else:
        lse_rep = model.logsumexp(flat, real_vocab)
    lse_rep = lse_rep.reshape(rep.shape[:2])  # [B, U]
    if "rows" in batch:  # every row reads its representative's state and normaliser
        lse_local = jnp.take_along_axis(lse_rep, batch["row_of"], axis=1)  # [B, R]
        local = jnp.take_along_axis(rep, batch["row_of"][..., None], axis=1)
    else:
        lse_local = lse_rep
    last, hc = local[:, 0], local[:, 1:].reshape(b * g * q, -1)
    first = model.logits_at(last, comp[:, :, 0]) - lse_local[:, :1]  # [B, G]
    rest = model.logits_at(hc, rest_tok) - lse_local[:, 1:].reshape(-1, 1)  # [N*q, 1]
    return jnp.concatenate([first.reshape(b * g, 1), rest.reshape(b * g, q)], axis=1)
