"""Fixed-length beam search core: ``T`` levels, one candidate policy per level, all inside ``jit``.

Every prompt is prefilled **once**; the cache is then broadcast to ``K`` beam rows. At level ``t``
each beam's full-vocabulary float32 log-probs are available to a per-level *policy* — either as a
``[B, K, V]`` log-softmax (`DenseScores`) or, with fused scoring, computed only for the candidate
tokens against a log-sum-exp of the hidden state (`FusedScores`) — which turns them into ``M_t``
candidates per beam (tokens, log-probs, next trie node); candidate scores
are ``beam score + log-prob``, and a global ``lax.top_k`` over the ``K * M_t`` candidates of a prompt
picks the next beams; the cache rows are gathered by parent. Only beam 0 is live at level 0 (the
others score ``-inf``), so beams are always distinct sequences. Beams that have no valid candidate
left carry ``-inf`` and lose every later ``top_k`` against a finite candidate.

Policies (`trie_policy`, `free_policy`, `forced_policy`) cover the trie-constrained decoder
(reference-spec §6.1/§6.4, any depth) and the reference port's fixed-length "pure" search (§6.5).
The result is sorted best first because the last level's ``top_k`` sorts.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from sidcore.decoding.trie import TrieLevel
from sidcore.errors import ConfigError
from sidcore.interfaces import DecodeModel, supports_fused_scoring

__all__ = [
    "DenseScores", "FusedScores", "Policy", "level_beam_search", "trie_policy", "free_policy", "forced_policy", "repeat_rows",
    "gather_rows", "check_vocab",
]

NEG_INF = -jnp.inf


class DenseScores:
    """Beam log-probs held as a full ``[B, K, V]`` array (any model)."""

    needs_full = False

    def __init__(self, logp: jax.Array) -> None:
        self.logp = logp  # [B, K, V]

    def at(self, tokens: jax.Array) -> jax.Array:
        """``tokens [B, K, M]`` -> their log-probs ``[B, K, M]``."""
        return jnp.take_along_axis(self.logp, tokens, axis=-1)

    def full(self) -> jax.Array:
        return self.logp


class FusedScores:
    """Beam log-probs computed on demand from hidden states ``[B, K, H]`` and their ``lse [B, K]``:
    gathering M candidates costs ``M * H`` per beam instead of a ``[V]`` log-softmax."""

    def __init__(self, model: Any, h: jax.Array, lse: jax.Array) -> None:
        self.model, self.h, self.lse = model, h, lse  # [B, K, H], [B, K]

    def at(self, tokens: jax.Array) -> jax.Array:
        b, k, m = tokens.shape
        lp = self.model.log_probs_at(self.h.reshape(b * k, -1), tokens.reshape(b * k, m), self.lse.reshape(-1))
        return lp.reshape(b, k, m)

    def full(self) -> jax.Array:
        b, k, hd = self.h.shape
        return self.model.log_probs(self.h.reshape(b * k, hd)).reshape(b, k, -1)


Scores = DenseScores | FusedScores
# (scores, nodes [B, K]) -> (tokens [B, K, M], logp [B, K, M], next nodes [B, K, M])
Policy = Callable[[Scores, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]


def trie_policy(level: TrieLevel) -> Policy:
    """Candidates = the trie children of each beam's node; padding and dead beams score ``-inf``;
    a ``-1`` child (after EOS of a shorter SID in a mixed-depth trie) costs 0 and is emitted as -1."""

    def policy(scores: Scores, nodes: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        tokens_tab = jnp.asarray(level.tokens)  # [E]
        start = jnp.asarray(level.start)[jnp.maximum(nodes, 0)]  # [B, K]
        count = jnp.asarray(level.count)[jnp.maximum(nodes, 0)]  # [B, K]
        j = jnp.arange(level.width, dtype=jnp.int32)
        valid = (j < count[..., None]) & (nodes[..., None] >= 0)  # [B, K, M]
        edge = jnp.where(valid, start[..., None] + j, 0)  # [B, K, M]
        tokens = tokens_tab[edge]  # [B, K, M]
        lp = scores.at(jnp.maximum(tokens, 0))  # [B, K, M]
        lp = jnp.where(tokens < 0, 0.0, lp)  # -1: finished path of a shorter SID (mixed depth), free
        return tokens, jnp.where(valid, lp, NEG_INF), jnp.where(valid, edge, -1)

    return policy


def free_policy(width: int) -> Policy:
    """Candidates = each beam's ``width`` best tokens over the whole vocabulary (unconstrained)."""

    def policy(scores: Scores, nodes: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        lp, tokens = jax.lax.top_k(scores.full(), width)  # [B, K, M]
        return tokens.astype(jnp.int32), lp, jnp.zeros_like(tokens, dtype=jnp.int32)

    return policy


def forced_policy(token: int) -> Policy:
    """One candidate per beam: ``token`` (its log-prob is added to the beam score)."""

    def policy(scores: Scores, nodes: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        tokens = jnp.full(nodes.shape + (1,), token, dtype=jnp.int32)  # [B, K, 1]
        return tokens, scores.at(tokens), nodes[..., None]

    return policy


def repeat_rows(tree: Any, k: int) -> Any:
    """Broadcast every cache leaf ``[B, ...]`` to ``[B * K, ...]`` (row ``b * K + j`` = prompt ``b``)."""
    return jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), tree)


def gather_rows(tree: Any, rows: jax.Array) -> Any:
    """Reorder every cache leaf by flat row ids ``rows [B * K]``."""
    return jax.tree.map(lambda x: x[rows], tree)


def level_beam_search(
    model: DecodeModel,
    input_ids: jax.Array,
    lengths: jax.Array,
    *,
    num_beams: int,
    policies: Sequence[Policy],
    cache_len: int,
    fused: bool = False,
    token_logps: bool = False,
) -> tuple[jax.Array, ...]:
    """Run ``len(policies)`` beam levels after a single prefill.

    Args:
        model: `DecodeModel` (prefill once, then one `step` per level but the last).
        input_ids: ``[B, Lp]`` right-padded prompts.
        lengths: ``[B]`` true prompt lengths.
        num_beams: ``K`` (static).
        policies: one candidate policy per generated token.
        cache_len: KV-cache length passed to ``prefill`` (>= ``Lp`` + number of levels).
        fused: score candidates through the model's fused API (``prefill_hidden``/``step_hidden``/
            ``log_normalizer``/``log_probs_at``) when it has one; only for gather-only policies.
        token_logps: also return each kept path's per-token log-probs ``[B, K, T]`` (the terms of
            its score), followed through the beam reordering like the tokens.

    Returns:
        ``(tokens [B, K, T] int32, scores [B, K] float32)``, best first; scores are sums of the
        ``T`` full-vocabulary log-probs (length penalty 0). With ``token_logps`` a third array.
    """
    k = int(num_beams)
    b = input_ids.shape[0]
    t_len = len(policies)
    fused = fused and supports_fused_scoring(model)
    if fused:
        h, cache = model.prefill_hidden(input_ids, lengths, cache_len)  # [B, H]
        lse = model.log_normalizer(h)  # [B]
        scores_now: Scores = FusedScores(model, jnp.broadcast_to(h[:, None], (b, k, h.shape[-1])),
                                         jnp.broadcast_to(lse[:, None], (b, k)))
    else:
        logits, cache = model.prefill(input_ids, lengths, cache_len)  # [B, V]
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [B, V]
        scores_now = DenseScores(jnp.broadcast_to(logp[:, None, :], (b, k, logp.shape[-1])))  # [B, K, V]
    cache = repeat_rows(cache, k)
    scores = jnp.where(jnp.arange(k) == 0, 0.0, NEG_INF) * jnp.ones((b, 1), jnp.float32)  # [B, K]
    nodes = jnp.zeros((b, k), jnp.int32)  # [B, K] trie node (root)
    seqs = jnp.full((b, k, t_len), -1, jnp.int32)  # [B, K, T]
    seq_lp = jnp.zeros((b, k, t_len), jnp.float32)  # [B, K, T] per-token log-probs of the kept paths
    row_base = (jnp.arange(b, dtype=jnp.int32) * k)[:, None]  # [B, 1]
    for t, policy in enumerate(policies):
        tokens, lp, nxt = policy(scores_now, nodes)  # [B, K, M] each
        m = tokens.shape[-1]
        cand = (scores[..., None] + lp).reshape(b, k * m)  # [B, K*M]
        scores, idx = jax.lax.top_k(cand, k)  # [B, K]
        parent = idx // m  # [B, K]
        chosen = jnp.take_along_axis(tokens.reshape(b, k * m), idx, axis=1)  # [B, K]
        nodes = jnp.take_along_axis(nxt.reshape(b, k * m), idx, axis=1)
        nodes = jnp.where(jnp.isfinite(scores), nodes, -1)
        seqs = jnp.take_along_axis(seqs, parent[..., None], axis=1).at[:, :, t].set(chosen)
        if token_logps:
            chosen_lp = jnp.take_along_axis(lp.reshape(b, k * m), idx, axis=1)  # [B, K]
            seq_lp = jnp.take_along_axis(seq_lp, parent[..., None], axis=1).at[:, :, t].set(chosen_lp)
        if t + 1 < t_len:
            if t:  # at level 0 every row of a prompt holds the same (prefill) cache
                cache = gather_rows(cache, (row_base + parent).reshape(-1))
            if fused:
                h, cache = model.step_hidden(chosen.reshape(-1), cache)  # [B*K, H]
                scores_now = FusedScores(model, h.reshape(b, k, -1), model.log_normalizer(h).reshape(b, k))
            else:
                logits, cache = model.step(chosen.reshape(-1), cache)  # [B*K, V]
                scores_now = DenseScores(jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1).reshape(b, k, -1))
    return (seqs, scores, seq_lp) if token_logps else (seqs, scores)


def check_vocab(max_token_id: int, vocab_size: int, what: str) -> None:
    """Raise `ConfigError` when ``what`` uses token ids beyond the model's vocabulary (trace time)."""
    if max_token_id >= vocab_size:
        raise ConfigError(
            f"{what} uses token id {max_token_id} but the model vocabulary has {vocab_size} rows"
        )

