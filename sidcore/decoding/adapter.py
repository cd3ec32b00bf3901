"""`LMDecodeModel`: the `DecodeModel` view of the NNX causal LM used by decoders.

It exposes only ``prefill``/``step``/``vocab_size``, casts logits to float32 and sets the padded
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

__all__ = ["LMDecodeModel"]


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
        logits = logits.astype(jnp.float32)  # [B, V]
        if self.real_vocab_size == self.vocab_size:
            return logits
        return jnp.where(jnp.arange(self.vocab_size) < self.real_vocab_size, logits, -jnp.inf)

    def prefill(self, input_ids: jax.Array, lengths: jax.Array, cache_len: int) -> tuple[jax.Array, Any]:
        """``input_ids [B, Lp]`` right-padded -> (logits ``[B, V]`` at ``lengths - 1``, cache)."""
        logits, cache = self._model().prefill(input_ids, lengths, cache_len)
        return self._mask(logits), cache

    def step(self, tokens: jax.Array, cache: Any) -> tuple[jax.Array, Any]:
        """``tokens [B]`` -> (logits ``[B, V]``, cache)."""
        logits, cache = self._model().decode_step(tokens, cache)
        return self._mask(logits), cache
