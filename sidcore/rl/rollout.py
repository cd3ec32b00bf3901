"""Rollouts: G completions per prompt through the catalog trie, inside one jit, one prefill per prompt.

- ``beam`` (upstream MiniOneRec): the trie decoder's constrained beam search with ``num_beams =
  G``; all G beams come back best first with their sequence log-probs (length penalty 0), so the
  group is deterministic and "rank i" is beam i.
- ``sample``: G independent trie-constrained samples; at every level each row draws one allowed
  child with probability proportional to ``exp(logp / temperature)`` over the allowed children
  (what upstream's ``-1e6`` mask does under sampling), by the Gumbel-max trick. With ``sort``
  (``rl.sample_order: logprob``, sid's default) samples are then sorted by their sequence log-prob,
  so rank-based rewards see "best first"; ``sort=False`` keeps the draw order, as upstream does
  (its ``ndcg_rule`` penalties then follow the sample index). Duplicates are possible (unlike beams).

Either way the rollout returns ``(tokens [B, G, T] int32, scores [B, G] float32)``; the per-token
log-probs used by the loss come from the teacher-forced forward (`sidcore.rl.loss.token_logps`).
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
import jax
import jax.numpy as jnp
import numpy as np

from sidcore.decoding.beam import DenseScores, FusedScores, check_vocab, repeat_rows, trie_policy
from sidcore.decoding.trie import SidTrie
from sidcore.errors import ConfigError
from sidcore.interfaces import DecodeModel

__all__ = ["TrieSampler", "check_group_batch", "make_rollout_fn", "sids_from_tokens"]


def check_group_batch(rows: int, num_generations: int, num_items: int) -> int:
    """Completion rows per step must be a multiple of G (and G at most the catalog); returns prompts."""
    g = int(num_generations)
    if g < 1:
        raise ConfigError(f"rl.num_generations must be >= 1, got {g}")
    if rows <= 0 or rows % g:
        raise ConfigError(f"rl.batch_size={rows} completion rows is not a multiple of rl.num_generations={g}")
    if g > num_items:
        raise ConfigError(f"rl.num_generations={g} exceeds the catalog size {num_items}")
    return rows // g


@attrs.frozen(kw_only=True, eq=False)
class TrieSampler:
    """Trie-constrained sampling of G completions per prompt (``decode`` is traceable by jit)."""

    trie: SidTrie
    temperature: float = 1.0
    fused_scoring: bool = True
    sort: bool = True  # best first by sequence log-prob; False: draw order (upstream)

    def max_new_tokens(self) -> int:
        return self.trie.path_length

    def decode(self, model: DecodeModel, input_ids: jax.Array, lengths: jax.Array, *, num_beams: int,
               rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        g, b = int(num_beams), input_ids.shape[0]
        check_vocab(self.trie.max_token_id, model.vocab_size, "rollout 'sample': the catalog")
        cache_len = input_ids.shape[1] + self.max_new_tokens()
        fused = self.fused_scoring and hasattr(model, "step_hidden")

        def scores_of(out: jax.Array, rows: int) -> Any:
            if fused:
                return FusedScores(model, out.reshape(b, rows, -1), model.log_normalizer(out).reshape(b, rows))
            logp = jax.nn.log_softmax(out.astype(jnp.float32), axis=-1)
            return DenseScores(logp.reshape(b, rows, -1))

        if fused:
            out, cache = model.prefill_hidden(input_ids, lengths, cache_len)  # [B, H]
        else:
            out, cache = model.prefill(input_ids, lengths, cache_len)  # [B, V]
        cache = repeat_rows(cache, g)
        out = jnp.repeat(out, g, axis=0)  # [B*G, ...] (cheap: one row per prompt computed)
        nodes = jnp.zeros((b, g), jnp.int32)
        total = jnp.zeros((b, g), jnp.float32)
        seqs = []
        keys = jax.random.split(rng, len(self.trie.levels))
        for t, level in enumerate(self.trie.levels):
            tokens, lp, nxt = trie_policy(level)(scores_of(out, g), nodes)  # [B, G, M]
            gumbel = jax.random.gumbel(keys[t], lp.shape, jnp.float32)
            pick = jnp.argmax(jnp.where(jnp.isfinite(lp), lp / self.temperature + gumbel, -jnp.inf), axis=-1)
            chosen = jnp.take_along_axis(tokens, pick[..., None], axis=-1)[..., 0]  # [B, G]
            total = total + jnp.take_along_axis(lp, pick[..., None], axis=-1)[..., 0]
            nodes = jnp.take_along_axis(nxt, pick[..., None], axis=-1)[..., 0]
            seqs.append(chosen)
            if t + 1 < len(self.trie.levels):
                step = model.step_hidden if fused else model.step
                out, cache = step(chosen.reshape(-1), cache)
        seq = jnp.stack(seqs, axis=-1)  # [B, G, T]
        if not self.sort:
            return seq, total
        order = jnp.argsort(-total, axis=-1)  # best first
        return jnp.take_along_axis(seq, order[..., None], axis=1), jnp.take_along_axis(total, order, axis=1)


def make_rollout_fn(merge: Callable[[Any], Any], *, real_vocab: int, decoder: Any, num_generations: int,
                    token_logps: bool = False) -> Callable[..., tuple[jax.Array, ...]]:
    """``rollout(params, input_ids [B, Lp], lengths [B], rng) -> (tokens [B, G, T], scores [B, G])``.

    ``decoder``: a `sidcore.interfaces.Decoder` (the ``trie`` decoder: beams) or a `TrieSampler`.
    ``token_logps``: return a third value, the beams' per-token log-probs ``[B, G, T]`` from the
    decoder's ``decode_token_logps`` (None when the decoder cannot give them).
    """
    from sidcore.decoding.adapter import LMDecodeModel

    g = int(num_generations)
    sampling = isinstance(decoder, TrieSampler)

    def rollout(params: Any, input_ids: jax.Array, lengths: jax.Array, rng: jax.Array):
        model = LMDecodeModel(merge(params), real_vocab)
        if sampling:
            return decoder.decode(model, input_ids, lengths, num_beams=g, rng=rng)
        if token_logps:
            got = decoder.decode_token_logps(model, input_ids, lengths, num_beams=g)
            if got is not None:
                return got
            return (*decoder.decode(model, input_ids, lengths, num_beams=g), None)
        return decoder.decode(model, input_ids, lengths, num_beams=g)

    return rollout


def sids_from_tokens(tokens: np.ndarray, level_strings: np.ndarray, depth: int) -> np.ndarray:
    """``tokens [B, G, T]`` -> ``[B, G]`` SID strings (the first ``depth`` level tokens joined).

    ``level_strings [V]``: the token string of every id (``""`` for ids that are not SID tokens).
    Vectorised: one gather and ``depth`` string concatenations for the whole step.
    """
    ids = np.clip(np.asarray(tokens)[..., :depth], 0, level_strings.shape[0] - 1)
    parts = level_strings[ids]  # [B, G, D]
    out = parts[..., 0]
    for d in range(1, depth):
        out = np.char.add(out, parts[..., d])
    return out
