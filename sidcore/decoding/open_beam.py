"""Open-ended (unconstrained) beam search with transformers ``generate`` semantics, inside ``jit``.

Mirrors the vectorised beam search of transformers 5.x (``GenerationMixin._beam_search``) for a
decoder-only model without logits processors:

* beam 0 starts at score 0, the other beams at ``-1e9`` (as HF, so tiny vocabularies behave alike);
* each step takes the ``2K`` best of the ``K * V`` continuations; those ending in EOS (or reaching
  ``max_new_tokens``) *and* ranked in the first ``K`` enter a separate top-``K`` pool of finished
  hypotheses with score ``sum_logprobs / generated_len ** length_penalty`` (EOS counted);
  the ``K`` best unfinished ones continue;
* a prompt stops accepting hypotheses when its pool is full and ``early_stopping is True``, or when
  the early-stop heuristic says no running beam can beat the worst finished one
  (``early_stopping=False``: at the current length; ``"never"``: at ``max_new_tokens`` when the
  length penalty is positive);
* the loop is a ``lax.while_loop`` that ends when every prompt has stopped or at ``max_new_tokens``.

Output tokens are padded with ``-1`` after EOS; pool slots never filled score ``-inf``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from sidcore.decoding.beam import gather_rows, repeat_rows
from sidcore.interfaces import DecodeModel

__all__ = ["open_beam_search"]

_DEAD = -1.0e9  # HF's initial score of beams 1..K-1


def _take(x: jax.Array, idx: jax.Array) -> jax.Array:
    """``x [B, N, ...]`` gathered along axis 1 by ``idx [B, M]``."""
    return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


def open_beam_search(
    model: DecodeModel,
    input_ids: jax.Array,
    lengths: jax.Array,
    *,
    num_beams: int,
    eos_id: int,
    max_new_tokens: int,
    length_penalty: float = 0.0,
    early_stopping: bool | str = True,
    cache_len: int,
) -> tuple[jax.Array, jax.Array]:
    """Beam search until EOS / ``max_new_tokens``; returns the ``K`` best finished hypotheses.

    Args:
        model: `DecodeModel`.
        input_ids: ``[B, Lp]`` right-padded prompts.
        lengths: ``[B]`` true prompt lengths.
        num_beams: ``K`` (static).
        eos_id: end-of-sequence token.
        max_new_tokens: ``T``, the most generated tokens (EOS included).
        length_penalty: exponent of the generated length dividing finished scores.
        early_stopping: ``True``, ``False`` or ``"never"`` (HF meanings).
        cache_len: KV-cache length for ``prefill`` (>= ``Lp + T``).

    Returns:
        ``(tokens [B, K, T] int32 padded with -1, scores [B, K] float32)``, best first.
    """
    k, t_max = int(num_beams), int(max_new_tokens)
    b = input_ids.shape[0]
    lp_exp = float(length_penalty)
    stop_when_full = early_stopping is True
    logits, cache = model.prefill(input_ids, lengths, cache_len)  # [B, V]
    v = logits.shape[-1]
    logits = jnp.repeat(logits, k, axis=0)  # [B*K, V]
    cache = repeat_rows(cache, k)
    row_base = (jnp.arange(b, dtype=jnp.int32) * k)[:, None]  # [B, 1]
    top_k_mask = jnp.arange(2 * k) < k  # [2K] only the first K candidates may finish

    def body(carry: dict[str, Any]) -> dict[str, Any]:
        t = carry["t"]
        logp = jax.nn.log_softmax(carry["logits"].astype(jnp.float32), axis=-1).reshape(b, k, v)
        acc = (carry["run_scores"][..., None] + logp).reshape(b, k * v)  # [B, K*V]
        cand_scores, idx = jax.lax.top_k(acc, 2 * k)  # [B, 2K]
        parent, tok = idx // v, (idx % v).astype(jnp.int32)
        cand_seqs = _take(carry["run_seqs"], parent)  # [B, 2K, T]
        cand_seqs = jax.lax.dynamic_update_index_in_dim(cand_seqs, tok, t, axis=2)
        hits = (tok == eos_id) | (t + 1 >= t_max)  # [B, 2K]

        # e. the K best unfinished candidates keep running
        run_scores, sel = jax.lax.top_k(jnp.where(hits, -jnp.inf, cand_scores), k)  # [B, K]
        run_seqs = _take(cand_seqs, sel)
        run_parent = jnp.take_along_axis(parent, sel, axis=1)  # [B, K]

        # f. finished candidates ranked in the first K join the pool (unless this prompt stopped)
        gen_len = (t + 1).astype(jnp.float32)
        fin_scores = cand_scores / gen_len**lp_exp
        accept = hits & top_k_mask & carry["open"][:, None]
        if stop_when_full:
            accept = accept & ~jnp.all(carry["pool_done"], axis=1, keepdims=True)
        fin_scores = jnp.where(accept, fin_scores, -jnp.inf)
        m_scores = jnp.concatenate([carry["pool_scores"], fin_scores], axis=1)  # [B, 3K]
        m_seqs = jnp.concatenate([carry["pool_seqs"], cand_seqs], axis=1)
        m_done = jnp.concatenate([carry["pool_done"], accept], axis=1)
        pool_scores, pidx = jax.lax.top_k(m_scores, k)
        pool_seqs, pool_done = _take(m_seqs, pidx), jnp.take_along_axis(m_done, pidx, axis=1)

        # g. early-stop heuristic (HF _check_early_stop_heuristic), monotone per prompt
        if early_stopping == "never" and lp_exp > 0.0:
            best_len = jnp.float32(t_max)
        else:
            best_len = gen_len
        best_running = run_scores[:, :1] / best_len**lp_exp  # [B, 1]
        worst = jnp.where(pool_done, jnp.min(pool_scores, axis=1, keepdims=True), _DEAD)  # [B, K]
        still_open = carry["open"] & jnp.any(best_running > worst, axis=1)
        if stop_when_full:
            still_open = still_open & ~jnp.all(pool_done, axis=1)
        go_on = jnp.any(still_open) & ~jnp.all(hits) & (t + 1 < t_max)

        def advance(c: Any) -> tuple[jax.Array, Any]:
            c = gather_rows(c, (row_base + run_parent).reshape(-1))
            last = jax.lax.dynamic_index_in_dim(run_seqs, t, axis=2, keepdims=False)  # [B, K]
            return model.step(last.reshape(-1), c)

        def hold(c: Any) -> tuple[jax.Array, Any]:
            return carry["logits"], c

        new_logits, new_cache = jax.lax.cond(go_on, advance, hold, carry["cache"])
        return dict(
            t=t + 1,
            go_on=go_on,
            open=still_open,
            logits=new_logits.astype(carry["logits"].dtype),
            cache=new_cache,
            run_scores=run_scores,
            run_seqs=run_seqs,
            pool_scores=pool_scores,
            pool_seqs=pool_seqs,
            pool_done=pool_done,
        )

    init = dict(
        t=jnp.int32(0),
        go_on=jnp.bool_(True),
        open=jnp.ones((b,), bool),
        logits=logits,
        cache=cache,
        run_scores=jnp.where(jnp.arange(k) == 0, 0.0, _DEAD) * jnp.ones((b, 1), jnp.float32),
        run_seqs=jnp.full((b, k, t_max), -1, jnp.int32),
        pool_scores=jnp.full((b, k), -jnp.inf, jnp.float32),
        pool_seqs=jnp.full((b, k, t_max), -1, jnp.int32),
        pool_done=jnp.zeros((b, k), bool),
    )
    out = jax.lax.while_loop(lambda c: c["go_on"], body, init)
    scores = jnp.where(out["pool_done"], out["pool_scores"], -jnp.inf)
    seqs = jnp.where(out["pool_done"][..., None], out["pool_seqs"], -1)
    return seqs, scores
