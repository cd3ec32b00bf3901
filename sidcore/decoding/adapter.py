"""`LMDecodeModel`: the `DecodeModel` view of the NNX causal LM used by decoders.

It exposes ``prefill``/``step``/``vocab_size`` (the `DecodeModel` contract), plus an optional fused
scoring API (``prefill_hidden``/``step_hidden``/``log_normalizer``/``log_probs_at``) with which a
gather-only beam policy scores its few candidate tokens against a chunked log-sum-exp instead of a
``[B, V]`` log-softmax. It casts logits to float32 and sets the padded
vocabulary columns (``>= real_vocab_size``, added for sharding) to ``-inf`` so no decoder can pick
them (reference-spec §11.2 item 4). The module is kept as an ``nnx.split`` pair and re-merged on
every call, so the adapter is a plain Python object that works when built inside ``jit`` (from
``nnx.merge(graphdef, state)``) and when its methods run inside ``lax.cond``/``lax.while_loop``
bodies of a decoder, without NNX state crossing trace levels.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from sidcore.model.modules import mask_padded_vocab

__all__ = ["LMDecodeModel", "lse_chunk"]


def lse_chunk(rows: int) -> int:
    """Vocabulary columns per log-sum-exp chunk for ``rows`` beam rows.

    On CPU the ``[rows, chunk]`` float32 block is kept near 4 MB so it stays in cache: 8192 columns
    up to 128 rows, fewer for wider batches (at least 512). With a fixed 8192, 32 prompts x 50 beams
    made every chunk 52 MB and a decode call 2.5x slower per prompt than one prompt alone
    (docs/benchmarks.md §8). Elsewhere (GPU, TPU) 8192, the model's default.
    """
    if jax.default_backend() != "cpu":
        return 8192
    return max(512, min(8192, (1 << 20) // max(int(rows), 1) // 128 * 128))


class LMDecodeModel:
    """`sidcore.interfaces.DecodeModel` over a model with ``prefill``/``decode_step``/``vocab_size``.

    Args:
        model: e.g. `sidcore.model.Qwen2ForCausalLM`.
        real_vocab_size: rows of the tokenizer vocabulary; larger ids are padding and get ``-inf``.
    """

    def __init__(self, model: nnx.Module, real_vocab_size: int) -> None:
        self.vocab_size = int(model.vocab_size)
        if not 0 < real_vocab_size <= self.vocab_size:
            raise ValueError(f"real_vocab_size={real_vocab_size} not in [1, {self.vocab_size}]")
        self.real_vocab_size = int(real_vocab_size)
        self._graphdef, self._state = nnx.split(model)

    def _model(self) -> Any:
        return nnx.merge(self._graphdef, self._state)

    def _mask(self, logits: jax.Array) -> jax.Array:
        return mask_padded_vocab(logits.astype(jnp.float32), self.real_vocab_size)  # [B, V]

    def prefill(self, input_ids: jax.Array, lengths: jax.Array, cache_len: int) -> tuple[jax.Array, Any]:
        """``input_ids [B, Lp]`` right-padded -> (logits ``[B, V]`` at ``lengths - 1``, cache)."""
        logits, cache = self._model().prefill(input_ids, lengths, cache_len)
        return self._mask(logits), cache

    def step(self, tokens: jax.Array, cache: Any) -> tuple[jax.Array, Any]:
        """``tokens [B]`` -> (logits ``[B, V]``, cache)."""
        logits, cache = self._model().decode_step(tokens, cache)
        return self._mask(logits), cache

    # -- fused scoring: what a gather-only policy (trie, forced token) needs, without [B, V] arrays
    def prefill_hidden(self, input_ids: jax.Array, lengths: jax.Array, cache_len: int) -> tuple[jax.Array, Any]:
        """Like `prefill` but returns the final hidden state ``[B, H]`` instead of logits."""
        return self._model().prefill_hidden(input_ids, lengths, cache_len)

    def step_hidden(self, tokens: jax.Array, cache: Any) -> tuple[jax.Array, Any]:
        """Like `step` but returns the final hidden state ``[B, H]`` instead of logits."""
        return self._model().decode_step_hidden(tokens, cache)

    def log_normalizer(self, h: jax.Array) -> jax.Array:
        """``logsumexp`` over the real vocabulary of the logits of ``h [N, H]`` -> ``[N]``."""
        return self._model().logsumexp(h, self.real_vocab_size, lse_chunk(h.shape[0]))

    def log_probs_at(self, h: jax.Array, tokens: jax.Array, lse: jax.Array) -> jax.Array:
        """Full-vocabulary log-probs of ``tokens [N, M]`` given ``h [N, H]`` and its ``lse [N]``;
        padded-vocabulary ids get ``-inf``."""
        lp = self._model().logits_at(h, tokens) - lse[:, None]  # [N, M]
        return jnp.where(tokens < self.real_vocab_size, lp, -jnp.inf)

    def log_probs(self, h: jax.Array) -> jax.Array:
        """Full-vocabulary log-probs ``[N, V]`` of ``h [N, H]`` (padded ids ``-inf``)."""
        return jax.nn.log_softmax(self._mask(self._model().logits(h)), axis=-1)
