"""Flax NNX modules of the Qwen2/Qwen2.5 causal LM (self-contained; no other model family is reused).

One mask mechanism covers left padding, right padding and sequence packing: token *i* may attend
to token *j* iff ``j <= i`` in physical order, both carry the same segment id, and that id is not 0
(segment 0 marks padding). RoPE positions are passed explicitly per token. Normalisation, RoPE and
the attention softmax run in float32 whatever the compute dtype; logits are always float32.

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

from sidcore.model.config import Qwen2Config

__all__ = [
    "RMSNorm", "Qwen2Attention", "Qwen2MLP", "Qwen2DecoderLayer", "Qwen2Model", "Qwen2ForCausalLM",
    "rope_cos_sin", "apply_rope", "attention_mask", "mask_padded_vocab", "positions_from_segments",
]

_F32 = jnp.float32
_INIT = nnx.initializers.normal(stddev=0.02)  # transformers' initializer_range default


def rope_cos_sin(positions: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """Rotate-half RoPE tables for integer `positions [B, L]` -> (cos, sin) each ``[B, L, D]`` f32."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=_F32) / head_dim))  # [D/2]
    freqs = positions.astype(_F32)[..., None] * inv_freq  # [B, L, D/2]
    emb = jnp.concatenate([freqs, freqs], axis=-1)  # [B, L, D]
    return jnp.cos(emb), jnp.sin(emb)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Apply RoPE to ``x [B, L, N, D]`` in float32; returns x's dtype."""
    xf = x.astype(_F32)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)  # rotate_half
    out = xf * cos[:, :, None, :] + rotated * sin[:, :, None, :]
    return out.astype(x.dtype)


def attention_mask(segment_ids: jax.Array) -> jax.Array:
    """``[B, L]`` segment ids -> ``[B, L, L]`` bool: causal AND same segment AND segment != 0."""
    L = segment_ids.shape[-1]
    causal = jnp.tril(jnp.ones((L, L), dtype=bool))  # [L, L]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # [B, L, L]
    real = (segment_ids != 0)[:, :, None]  # [B, L, 1]
    return causal[None] & same & real


def positions_from_segments(segment_ids: jax.Array) -> jax.Array:
    """Per-token position = number of earlier tokens of the same segment (``[B, L]`` int32)."""
    L = segment_ids.shape[-1]
    before = jnp.tril(jnp.ones((L, L), dtype=bool), k=-1)  # [L, L], strictly earlier
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # [B, L, L]
    return jnp.sum(before[None] & same, axis=-1).astype(jnp.int32)


def mask_padded_vocab(logits: jax.Array, real_vocab: int) -> jax.Array:
    """Set logit columns ``>= real_vocab`` (sharding padding rows) to ``-inf``."""
    V = logits.shape[-1]
    if real_vocab >= V:
        return logits
    keep = jnp.arange(V) < real_vocab  # [V]
    return jnp.where(keep, logits, -jnp.inf)


class RMSNorm(nnx.Module):
    """RMSNorm with the statistics in float32 (weight applied in the input dtype, as transformers)."""

    def __init__(self, dim: int, *, eps: float, param_dtype: Any = _F32):
        self.scale = nnx.Param(jnp.ones((dim,), dtype=param_dtype))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        xf = x.astype(_F32)
        var = jnp.mean(xf * xf, axis=-1, keepdims=True)
        y = (xf * jax.lax.rsqrt(var + self.eps)).astype(x.dtype)
        return self.scale[...].astype(x.dtype) * y


class Dense(nnx.Module):
    """``y = x @ kernel [+ bias]`` with ``kernel [in, out]`` (transformers' ``weight.T``).

    Leading dims are flattened to one before the matmul: XLA:CPU's backward of a dot with two
    contracting dims (``[B, L, in]`` against the kernel gradient) was ~2x slower than the same
    dot on ``[B*L, in]`` (measured in the MLP, docs/benchmarks.md).
    """

    def __init__(self, n_in: int, n_out: int, *, bias: bool, rngs: nnx.Rngs, pd: Any, cd: Any):
        self.kernel = nnx.Param(_INIT(rngs.params(), (n_in, n_out), pd))
        self.bias = nnx.Param(jnp.zeros((n_out,), pd)) if bias else None
        self.compute_dtype = cd

    def __call__(self, x: jax.Array) -> jax.Array:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1]).astype(self.compute_dtype)  # [N, in]
        y = x2 @ self.kernel[...].astype(self.compute_dtype)  # [N, out]
        if self.bias is not None:
            y = y + self.bias[...].astype(self.compute_dtype)
        return y.reshape(*lead, y.shape[-1])


def _dense(n_in: int, n_out: int, *, bias: bool, rngs: nnx.Rngs, pd: Any, cd: Any) -> Dense:
    return Dense(n_in, n_out, bias=bias, rngs=rngs, pd=pd, cd=cd)


def _write_slot(cache: jax.Array, new: jax.Array, index: jax.Array) -> jax.Array:
    """Write ``new [B, 1, ...]`` into ``cache [B, C, ...]`` at per-row slot ``index [B]``."""
    return jax.vmap(lambda c, u, i: jax.lax.dynamic_update_slice_in_dim(c, u, i, axis=0))(
        cache, new.astype(cache.dtype), index
    )


class Qwen2Attention(nnx.Module):
    """Grouped-query self-attention with q/k/v bias and no output bias."""

    def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs, param_dtype: Any, compute_dtype: Any):
        H, D = cfg.hidden_size, cfg.resolved_head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, D
        kw = dict(rngs=rngs, pd=param_dtype, cd=compute_dtype)
        self.q_proj = _dense(H, self.num_heads * D, bias=True, **kw)
        self.k_proj = _dense(H, self.num_kv_heads * D, bias=True, **kw)
        self.v_proj = _dense(H, self.num_kv_heads * D, bias=True, **kw)
        self.o_proj = _dense(self.num_heads * D, H, bias=False, **kw)
        self.impl = "xla"  # or "cudnn": see Qwen2ForCausalLM.set_attention

    def __call__(
        self,
        x: jax.Array,
        cos: jax.Array,
        sin: jax.Array,
        mask: jax.Array,
        cache: dict[str, jax.Array] | None = None,
        write_index: jax.Array | None = None,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Attend ``x [B, L, H]`` under ``mask [B, L, S]``.

        Without `cache` the keys are the L input tokens (S = L). With `cache` (``k``/``v``
        ``[B, C, KV, D]``) the new keys/values are written at slot ``write_index [B]`` first and the
        queries attend over all C slots (S = C). Returns (output ``[B, L, H]``, {"k", "v"} used).
        """
        B, L, _ = x.shape
        N, K, D = self.num_heads, self.num_kv_heads, self.head_dim
        q = apply_rope(self.q_proj(x).reshape(B, L, N, D), cos, sin)  # [B, L, N, D]
        k = apply_rope(self.k_proj(x).reshape(B, L, K, D), cos, sin)  # [B, L, K, D]
        v = self.v_proj(x).reshape(B, L, K, D)  # [B, L, K, D]
        if cache is not None:
            k = _write_slot(cache["k"], k, write_index)  # [B, C, K, D]
            v = _write_slot(cache["v"], v, write_index)
        if self.impl == "cudnn" and cache is None:
            # Fused flash attention (NVIDIA GPUs, bf16/f16): the [L, S] scores never reach memory. The
            # mask becomes a large finite negative bias, so a padding query (no allowed key) gets a
            # uniform row as below instead of NaN.
            out = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None], scale=D ** -0.5,
                                               implementation="cudnn")  # [B, L, N, D]
            return self.o_proj(out.reshape(B, L, N * D).astype(x.dtype)), {"k": k, "v": v}
        qg = q.reshape(B, L, K, N // K, D)  # query head n = kv_head * G + g (transformers repeat_kv order)
        scores = jnp.einsum("blkgd,bskd->bkgls", qg, k.astype(q.dtype), preferred_element_type=_F32)
        scores = scores * (D ** -0.5)  # [B, K, G, L, S]
        # Finite fill: a fully masked row (padding query) softmaxes to uniform instead of NaN.
        scores = jnp.where(mask[:, None, None, :, :], scores, jnp.finfo(_F32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        out = jnp.einsum("bkgls,bskd->blkgd", probs, v).reshape(B, L, N * D)  # [B, L, N*D]
        return self.o_proj(out.astype(x.dtype)), {"k": k, "v": v}


class Qwen2MLP(nnx.Module):
    """SwiGLU feed-forward: ``down(silu(gate(x)) * up(x))``, no biases."""

    def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs, param_dtype: Any, compute_dtype: Any):
        kw = dict(rngs=rngs, pd=param_dtype, cd=compute_dtype)
        H, F = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = _dense(H, F, bias=False, **kw)
        self.up_proj = _dense(H, F, bias=False, **kw)
        self.down_proj = _dense(F, H, bias=False, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class Qwen2DecoderLayer(nnx.Module):
    """Pre-norm block: ``x + attn(norm(x))`` then ``h + mlp(norm(h))``."""

    def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs, param_dtype: Any, compute_dtype: Any):
        kw = dict(rngs=rngs, param_dtype=param_dtype, compute_dtype=compute_dtype)
        self.input_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, param_dtype=param_dtype)
        self.self_attn = Qwen2Attention(cfg, **kw)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps,
                                                param_dtype=param_dtype)
        self.mlp = Qwen2MLP(cfg, **kw)

    def __call__(self, x, cos, sin, mask, cache=None, write_index=None):
        """Same arguments as `Qwen2Attention`; returns (``[B, L, H]``, {"k", "v"})."""
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
            Qwen2DecoderLayer(cfg, rngs=rngs, param_dtype=param_dtype, compute_dtype=compute_dtype)
            for _ in range(cfg.num_hidden_layers)
        ])
        self.norm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, param_dtype=param_dtype)


class Qwen2ForCausalLM(nnx.Module):
    """Qwen2/Qwen2.5 causal LM.

    Args:
        cfg: architecture.
        rngs: initialisation RNGs (normal(0.02) weights, zero biases, unit norms).
        param_dtype: dtype parameters are stored in.
        compute_dtype: dtype of matmuls/activations (norm stats, RoPE, softmax and logits are f32).
        remat: rematerialise each decoder layer in the backward pass (`hidden` only).
    """

    def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs, param_dtype: Any = _F32,
                 compute_dtype: Any = _F32, remat: bool = False):
        self.cfg = cfg
        self.param_dtype = jnp.dtype(param_dtype)
        self.compute_dtype = jnp.dtype(compute_dtype)
        self.remat = remat
        self.model = Qwen2Model(cfg, rngs=rngs, param_dtype=param_dtype, compute_dtype=compute_dtype)
        self.lm_head = None if cfg.tie_word_embeddings else _dense(
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
        x = self.model.embed_tokens(input_ids)  # [B, L, H]
        cos, sin = self._rope(positions)  # [B, L, D]
        mask = attention_mask(segment_ids)  # [B, L, L]
        fn = nnx.remat(_layer_hidden) if self.remat else _layer_hidden
        for layer in self.model.layers:
            x = fn(layer, x, cos, sin, mask)
        return self.model.norm(x)

    def logits(self, h: jax.Array) -> jax.Array:
        """Vocab projection ``[..., H] -> [..., V]`` float32 (tied: ``h @ embedding.T``)."""
        h = h.astype(self.compute_dtype)
        if self.lm_head is None:
            w = self.model.embed_tokens.embedding[...].astype(self.compute_dtype)  # [V, H]
            out = jnp.einsum("...h,vh->...v", h, w, preferred_element_type=_F32)
        else:
            w = self.lm_head.kernel[...].astype(self.compute_dtype)  # [H, V]
            out = jnp.einsum("...h,hv->...v", h, w, preferred_element_type=_F32)
        return out.astype(_F32)

    def _vocab_rows(self) -> jax.Array:
        """Output-projection weights as ``[V, H]`` rows (the embedding when tied)."""
        if self.lm_head is None:
            return self.model.embed_tokens.embedding[...]
        return self.lm_head.kernel[...].T

    def logits_at(self, h: jax.Array, tokens: jax.Array) -> jax.Array:
        """Logits of selected tokens only: ``h [N, H]``, ``tokens [N, M]`` -> ``[N, M]`` f32."""
        rows = self._vocab_rows()[jnp.clip(tokens, 0, self.vocab_size - 1)]  # [N, M, H]
        return jnp.einsum("nh,nmh->nm", h.astype(self.compute_dtype), rows.astype(self.compute_dtype),
                          preferred_element_type=_F32)

    def logsumexp(self, h: jax.Array, real_vocab: int, chunk: int = 8192) -> jax.Array:
        """``logsumexp`` over the logits of rows ``< real_vocab`` without materialising ``[N, V]``.

        The vocabulary is scanned in chunks with an online max/sum merge: exact up to float
        rounding, and several times faster than ``log_softmax`` of the full logits on CPU, where the
        ``[N, V]`` float32 array makes the step memory-bound (docs/benchmarks.md).
        """
        w_all = self._vocab_rows()  # [V, H]
        c = min(chunk, real_vocab)
        n_chunks = -(-real_vocab // c)
        hc = h.astype(self.compute_dtype)  # [N, H]

        def body(carry, i):
            m, total = carry  # [N], [N]
            start = jnp.minimum(i * c, real_vocab - c)  # the last chunk overlaps the previous one
            w = jax.lax.dynamic_slice_in_dim(w_all, start, c, axis=0).astype(self.compute_dtype)  # [C, H]
            z = jnp.einsum("nh,ch->nc", hc, w, preferred_element_type=_F32)  # [N, C]
            z = jnp.where((start + jnp.arange(c) >= i * c)[None, :], z, -jnp.inf)  # drop the overlap
            m_new = jnp.maximum(m, z.max(axis=-1))
            total = total * jnp.exp(m - m_new) + jnp.exp(z - m_new[:, None]).sum(axis=-1)
            return (m_new, total), None

        init = (jnp.full(h.shape[:1], -jnp.inf, _F32), jnp.zeros(h.shape[:1], _F32))
        (m, total), _ = jax.lax.scan(body, init, jnp.arange(n_chunks))
        return m + jnp.log(total)

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
