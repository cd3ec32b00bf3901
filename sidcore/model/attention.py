"""Grouped-query self-attention of the Qwen decoders (Qwen2: q/k/v bias; Qwen3: per-head q/k RMSNorm).

The softmax runs in float32 whatever the compute dtype. With a KV cache the new keys/values are
written into their slot first and the queries attend over every slot under the given mask.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from sidcore.model.config import Qwen2Config
from sidcore.model.layers import RMSNorm, _dense, apply_rope

__all__ = ["Qwen2Attention"]

_F32 = jnp.float32


def _write_slot(cache: jax.Array, new: jax.Array, index: jax.Array) -> jax.Array:
    """Write ``new [B, 1, ...]`` into ``cache [B, C, ...]`` at per-row slot ``index [B]``."""
    return jax.vmap(lambda c, u, i: jax.lax.dynamic_update_slice_in_dim(c, u, i, axis=0))(
        cache, new.astype(cache.dtype), index
    )


class Qwen2Attention(nnx.Module):
    """Grouped-query self-attention of both families.

    Qwen2: q/k/v bias, no output bias. Qwen3: no bias at all, and an RMSNorm over each head's
    ``head_dim`` features of the queries (``q_norm``) and keys (``k_norm``) before RoPE.
    """

    def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs, param_dtype: Any, compute_dtype: Any):
        H, D = cfg.hidden_size, cfg.resolved_head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, D
        kw = dict(rngs=rngs, pd=param_dtype, cd=compute_dtype)
        bias = cfg.qkv_bias
        self.q_proj = _dense(H, self.num_heads * D, bias=bias, **kw)
        self.k_proj = _dense(H, self.num_kv_heads * D, bias=bias, **kw)
        self.v_proj = _dense(H, self.num_kv_heads * D, bias=bias, **kw)
        self.o_proj = _dense(self.num_heads * D, H, bias=False, **kw)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(D, eps=cfg.rms_norm_eps, param_dtype=param_dtype)
            self.k_norm = RMSNorm(D, eps=cfg.rms_norm_eps, param_dtype=param_dtype)
        else:
            self.q_norm = self.k_norm = None
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
        with jax.named_scope("attention"):
            return self._attend(x, cos, sin, mask, cache, write_index)

    def _attend(self, x, cos, sin, mask, cache, write_index):
        B, L, _ = x.shape
        N, K, D = self.num_heads, self.num_kv_heads, self.head_dim
        q = self.q_proj(x).reshape(B, L, N, D)  # [B, L, N, D]
        k = self.k_proj(x).reshape(B, L, K, D)  # [B, L, K, D]
        if self.q_norm is not None:  # Qwen3: normalise each head's D features, then rotate
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
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
