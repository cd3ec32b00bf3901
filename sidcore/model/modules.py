"""Flax NNX modules of the Qwen2/Qwen2.5 and Qwen3 causal LMs (self-contained; no other family reused).

One mask mechanism covers left padding, right padding and sequence packing: token *i* may attend
to token *j* iff ``j <= i`` in physical order, both carry the same segment id, and that id is not 0
(segment 0 marks padding). RoPE positions are passed explicitly per token. Normalisation, RoPE and
the attention softmax run in float32 whatever the compute dtype; logits are always float32. The
two families differ only inside attention (`sidcore.model.attention`); the building blocks live in
`sidcore.model.layers`. Each decoder layer, its attention and MLP, and the vocabulary projection run
under a `jax.named_scope` (``layer_<i>``, ``attention``, ``mlp``, ``lm_head``) so profiles read well.

Call modes: `hidden` (full-sequence forward to final-norm hidden states), `logits` (vocab
projection, kept separate so a loss can gather label positions first), `__call__` (both), and the
KV-cache pair `prefill` / `decode_step`. The cache is a pure pytree whose every leaf has the batch
axis first::

    {"layers": [{"k": [B, C, KV, D], "v": [B, C, KV, D]}, ...],   # compute dtype
     "valid": [B, C] bool,   # slot holds a real token
     "pos":   [B] int32,     # RoPE position of the next token
     "index": [B] int32}     # slot the next token is written to
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from sidcore.model.attention import Qwen2Attention
from sidcore.model.config import Qwen2Config
from sidcore.model.lse import chunked_logsumexp, logsumexp_given
from sidcore.model.layers import (
    _INIT,
    RMSNorm,
    Qwen2MLP,
    _dense,
    apply_rope,
    attention_mask,
    mask_padded_vocab,
    positions_from_segments,
    rope_cos_sin,
)

__all__ = [
    "RMSNorm", "Qwen2Attention", "Qwen2MLP", "Qwen2DecoderLayer", "Qwen2Model", "Qwen2ForCausalLM",
    "rope_cos_sin", "apply_rope", "attention_mask", "mask_padded_vocab", "positions_from_segments",
]

_F32 = jnp.float32


class Qwen2DecoderLayer(nnx.Module):
    """Pre-norm block: ``x + attn(norm(x))`` then ``h + mlp(norm(h))``."""

    def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs, param_dtype: Any, compute_dtype: Any,
                 index: int = 0):
        kw = dict(rngs=rngs, param_dtype=param_dtype, compute_dtype=compute_dtype)
        self.index = index  # names the profiler scope only
        self.input_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, param_dtype=param_dtype)
        self.self_attn = Qwen2Attention(cfg, **kw)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps,
                                                param_dtype=param_dtype)
        self.mlp = Qwen2MLP(cfg, **kw)

    def __call__(self, x, cos, sin, mask, cache=None, write_index=None):
        """Same arguments as `Qwen2Attention`; returns (``[B, L, H]``, {"k", "v"})."""
        with jax.named_scope(f"layer_{self.index}"):
            attn, kv = self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, write_index)
            h = x + attn.astype(x.dtype)
            return h + self.mlp(self.post_attention_layernorm(h)).astype(x.dtype), kv


def _layer_hidden(layer: Qwen2DecoderLayer, x, cos, sin, mask):
    return layer(x, cos, sin, mask)[0]


class Qwen2Model(nnx.Module):
    """Embedding, decoder stack and final norm (the HF ``model.`` prefix)."""

    def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs, param_dtype: Any, compute_dtype: Any):
        self.embed_tokens = nnx.Embed(cfg.vocab_size, cfg.hidden_size, dtype=compute_dtype,
                                      param_dtype=param_dtype, embedding_init=_INIT, rngs=rngs)
        self.layers = nnx.List([
            Qwen2DecoderLayer(cfg, rngs=rngs, param_dtype=param_dtype, compute_dtype=compute_dtype, index=i)
            for i in range(cfg.num_hidden_layers)
        ])
        self.norm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, param_dtype=param_dtype)


class Qwen2ForCausalLM(nnx.Module):
    """Qwen2/Qwen2.5 or Qwen3 causal LM (the family is ``cfg.model_type``).

    Args:
        cfg: architecture.
        rngs: initialisation RNGs (normal(0.02) weights, zero biases, unit norms).
        param_dtype: dtype parameters are stored in.
        compute_dtype: dtype of matmuls/activations (norm stats, RoPE, softmax and logits are f32).
        remat: rematerialise each decoder layer in the backward pass (`hidden` only).
        head: build the untied LM head; ``False`` gives the base decoder only (what transformers'
            `AutoModel` loads, e.g. for embeddings), whose logits raise when the config is untied.
    """

    def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs, param_dtype: Any = _F32,
                 compute_dtype: Any = _F32, remat: bool = False, head: bool = True):
        self.cfg = cfg
        self.param_dtype = jnp.dtype(param_dtype)
        self.compute_dtype = jnp.dtype(compute_dtype)
        self.remat = remat
        self.model = Qwen2Model(cfg, rngs=rngs, param_dtype=param_dtype, compute_dtype=compute_dtype)
        self.lm_head = None if cfg.tie_word_embeddings or not head else _dense(
            cfg.hidden_size, cfg.vocab_size, bias=False, rngs=rngs, pd=param_dtype, cd=compute_dtype)

    def set_attention(self, impl: str) -> None:
        """Attention kernel of the full-sequence forward (training, validation loss).

        ``"xla"``: einsum + float32 softmax, any device and dtype (the reference path).
        ``"cudnn"``: `jax.nn.dot_product_attention(implementation="cudnn")`, fused flash attention on
        NVIDIA GPUs in bf16/f16. KV-cache calls (prefill, decode) always use the einsum path.
        """
        if impl not in ("xla", "cudnn"):
            raise ValueError(f"attention implementation must be 'xla' or 'cudnn', got {impl!r}")
        for layer in self.model.layers:
            layer.self_attn.impl = impl

    @property
    def vocab_size(self) -> int:
        """Rows of the (possibly padded) vocabulary = logits' last dim."""
        return int(self.model.embed_tokens.embedding.shape[0])

    # ----------------------------------------------------------------- full-sequence forward
    def _rope(self, positions: jax.Array) -> tuple[jax.Array, jax.Array]:
        return rope_cos_sin(positions, self.cfg.resolved_head_dim, self.cfg.rope_theta)

    def hidden(self, input_ids: jax.Array, positions: jax.Array, segment_ids: jax.Array) -> jax.Array:
        """Final-norm hidden states ``[B, L, H]`` (compute dtype) of ``input_ids [B, L]``.

        Args:
            input_ids: token ids ``[B, L]``.
            positions: RoPE positions ``[B, L]``.
            segment_ids: ``[B, L]``; attention stays inside equal non-zero ids (0 = padding).
        """
        return self.hidden_masked(input_ids, positions, attention_mask(segment_ids))

    def hidden_masked(self, input_ids: jax.Array, positions: jax.Array, mask: jax.Array) -> jax.Array:
        """`hidden` under an explicit boolean attention mask ``[B, L, L]`` (query, key) instead of the
        segment rule, e.g. a tree of completions sharing one prompt (`sidcore.rl.group_forward`)."""
        x = self.model.embed_tokens(input_ids)  # [B, L, H]
        cos, sin = self._rope(positions)  # [B, L, D]
        fn = nnx.remat(_layer_hidden) if self.remat else _layer_hidden
        for layer in self.model.layers:
            x = fn(layer, x, cos, sin, mask)
        return self.model.norm(x)

    def logits(self, h: jax.Array) -> jax.Array:
        """Vocab projection ``[..., H] -> [..., V]`` float32 (tied: ``h @ embedding.T``)."""
        with jax.named_scope("lm_head"):
            return self._logits(h)

    def _logits(self, h: jax.Array) -> jax.Array:
        h = h.astype(self.compute_dtype)
        self._check_head()
        if self.lm_head is None:
            w = self.model.embed_tokens.embedding[...].astype(self.compute_dtype)  # [V, H]
            out = jnp.einsum("...h,vh->...v", h, w, preferred_element_type=_F32)
        else:
            w = self.lm_head.kernel[...].astype(self.compute_dtype)  # [H, V]
            out = jnp.einsum("...h,hv->...v", h, w, preferred_element_type=_F32)
        return out.astype(_F32)

    def _check_head(self) -> None:
        if self.lm_head is None and not self.cfg.tie_word_embeddings:
            raise ValueError("this model was built without its (untied) LM head (head=False): only `hidden` "
                             "and `prefill_hidden`/`decode_step_hidden` are available, not logits")

    def _vocab_rows(self) -> jax.Array:
        """Output-projection weights as ``[V, H]`` rows (the embedding when tied)."""
        self._check_head()
        if self.lm_head is None:
            return self.model.embed_tokens.embedding[...]
        return self.lm_head.kernel[...].T

    def label_logsumexp(self, h: jax.Array, real_vocab: int) -> jax.Array:
        """``logsumexp`` over the real vocabulary rows for ``h [N, H]`` -> ``[N]`` f32, computed on
        vocab-major logits ``[V, N]``: the same numbers as ``logsumexp(logits(h))``, and its forward
        and backward run about 1.6x faster on XLA:CPU than the ``[N, V]`` layout at small N (train
        labels; docs/benchmarks.md §6)."""
        with jax.named_scope("lm_head"):
            w = self._vocab_rows().astype(self.compute_dtype)  # [V, H]
            z = jnp.einsum("vh,nh->vn", w, h.astype(self.compute_dtype), preferred_element_type=_F32)
            if real_vocab < z.shape[0]:
                z = jnp.where((jnp.arange(z.shape[0]) < real_vocab)[:, None], z, -jnp.inf)
            return jax.nn.logsumexp(z, axis=0)

    def logits_at(self, h: jax.Array, tokens: jax.Array) -> jax.Array:
        """Logits of selected tokens only: ``h [N, H]``, ``tokens [N, M]`` -> ``[N, M]`` f32."""
        with jax.named_scope("lm_head"):
            rows = self._vocab_rows()[jnp.clip(tokens, 0, self.vocab_size - 1)]  # [N, M, H]
            return jnp.einsum("nh,nmh->nm", h.astype(self.compute_dtype), rows.astype(self.compute_dtype),
                              preferred_element_type=_F32)

    def logsumexp(self, h: jax.Array, real_vocab: int, chunk: int = 8192) -> jax.Array:
        """``logsumexp`` over the logits of rows ``< real_vocab`` without materialising ``[N, V]``.

        The vocabulary is scanned in chunks with an online max/sum merge: exact up to float
        rounding, and several times faster than ``log_softmax`` of the full logits on CPU, where the
        ``[N, V]`` float32 array makes the step memory-bound (docs/benchmarks.md). Its gradient
        recomputes each chunk once (`sidcore.model.lse`).
        """
        with jax.named_scope("lm_head"):
            return self._logsumexp(h, real_vocab, chunk)

    def logsumexp_given(self, h: jax.Array, lse: jax.Array, real_vocab: int, chunk: int = 8192) -> jax.Array:
        """`logsumexp` whose value ``lse [N]`` is known (no vocabulary pass forward); its gradient is
        the log-sum-exp's at that value (`sidcore.model.lse.logsumexp_given`)."""
        with jax.named_scope("lm_head"):
            return logsumexp_given(h, self._vocab_rows(), jax.lax.stop_gradient(lse), real_vocab, chunk,
                                   self.compute_dtype)

    def _logsumexp(self, h: jax.Array, real_vocab: int, chunk: int) -> jax.Array:
        return chunked_logsumexp(h, self._vocab_rows(), real_vocab, chunk, self.compute_dtype)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None,
                 positions: jax.Array | None = None, segment_ids: jax.Array | None = None) -> jax.Array:
        """Logits ``[B, L, V]`` float32.

        Defaults: with only `attention_mask`, positions = cumsum(mask) - 1 (clipped at 0) and
        segment_ids = mask; with `segment_ids` and no positions, positions restart in each segment.
        """
        if segment_ids is None:
            if attention_mask is None:
                m = jnp.ones_like(input_ids, jnp.int32)
            else:
                m = attention_mask.astype(jnp.int32)
            segment_ids = m
            if positions is None:
                positions = jnp.maximum(jnp.cumsum(m, axis=-1) - 1, 0)
        elif attention_mask is not None:
            segment_ids = jnp.where(attention_mask.astype(bool), segment_ids, 0)
        if positions is None:
            positions = positions_from_segments(segment_ids)
        return self.logits(self.hidden(input_ids, positions, segment_ids))

    # ----------------------------------------------------------------- KV-cache decoding
    def prefill(self, input_ids: jax.Array, lengths: jax.Array, cache_len: int) -> tuple[jax.Array, dict]:
        """`prefill_hidden` followed by the vocabulary projection: (logits ``[B, V]`` f32, cache)."""
        h, cache = self.prefill_hidden(input_ids, lengths, cache_len)
        return self.logits(h), cache

    def decode_step(self, tokens: jax.Array, cache: dict) -> tuple[jax.Array, dict]:
        """Append ``tokens [B]`` (one per row) -> (logits ``[B, V]`` f32, updated cache)."""
        h, cache = self.decode_step_hidden(tokens, cache)
        return self.logits(h), cache

    def prefill_hidden(self, input_ids: jax.Array, lengths: jax.Array, cache_len: int) -> tuple[jax.Array, dict]:
        """Run right-padded prompts and build the cache.

        Args:
            input_ids: ``[B, Lp]`` right-padded prompts.
            lengths: ``[B]`` real prompt lengths (``1 <= length <= Lp``).
            cache_len: static cache size C (``>= Lp`` + tokens to decode).

        Returns:
            (final hidden state ``[B, H]`` at position ``lengths - 1``, cache). Slots ``[0, Lp)`` hold the
            prompt (valid where ``slot < length``); the first decoded token goes to slot Lp with
            RoPE position ``length``.
        """
        B, Lp = input_ids.shape
        if cache_len < Lp:
            raise ValueError(f"prefill: cache_len={cache_len} < prompt length {Lp}")
        lengths = lengths.astype(jnp.int32)
        slots = jnp.arange(Lp, dtype=jnp.int32)  # [Lp]
        segment_ids = (slots[None, :] < lengths[:, None]).astype(jnp.int32)  # [B, Lp]
        positions = jnp.broadcast_to(slots, (B, Lp))
        x = self.model.embed_tokens(input_ids)  # [B, Lp, H]
        cos, sin = self._rope(positions)
        mask = attention_mask(segment_ids)
        pad = [(0, 0), (0, cache_len - Lp), (0, 0), (0, 0)]
        layers = []
        for layer in self.model.layers:
            x, kv = layer(x, cos, sin, mask)
            layers.append({n: jnp.pad(kv[n].astype(self.compute_dtype), pad) for n in ("k", "v")})
        h = self.model.norm(x)  # [B, Lp, H]
        last = h[jnp.arange(B), jnp.clip(lengths - 1, 0, Lp - 1)]  # [B, H] (returned as is)
        cache = {
            "layers": layers,
            "valid": jnp.arange(cache_len, dtype=jnp.int32)[None, :] < lengths[:, None],  # [B, C]
            "pos": lengths,  # [B]
            "index": jnp.full((B,), Lp, dtype=jnp.int32),  # [B]
        }
        return last, cache

    def decode_step_hidden(self, tokens: jax.Array, cache: dict) -> tuple[jax.Array, dict]:
        """Append ``tokens [B]`` (one per row) -> (final hidden state ``[B, H]``, updated cache)."""
        pos, index = cache["pos"], cache["index"]  # [B], [B]
        C = cache["valid"].shape[1]
        valid = cache["valid"] | (jnp.arange(C, dtype=jnp.int32)[None, :] == index[:, None])  # [B, C]
        x = self.model.embed_tokens(tokens[:, None])  # [B, 1, H]
        cos, sin = self._rope(pos[:, None])  # [B, 1, D]
        mask = valid[:, None, :]  # [B, 1, C]
        layers = []
        for layer, layer_cache in zip(self.model.layers, cache["layers"]):
            x, kv = layer(x, cos, sin, mask, layer_cache, index)
            layers.append(kv)
        h = self.model.norm(x)[:, 0]  # [B, H]
        return h, {"layers": layers, "valid": valid, "pos": pos + 1, "index": index + 1}
