"""Building blocks of the Qwen decoders: RoPE, the segment mask, RMSNorm, dense layers, the SwiGLU MLP.

Normalisation and RoPE run in float32 whatever the compute dtype (as transformers does).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from sidcore.model.config import Qwen2Config

__all__ = [
    "RMSNorm", "Dense", "Qwen2MLP", "rope_cos_sin", "apply_rope", "attention_mask", "mask_padded_vocab",
    "positions_from_segments",
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


class Qwen2MLP(nnx.Module):
    """SwiGLU feed-forward: ``down(silu(gate(x)) * up(x))``, no biases."""

    def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs, param_dtype: Any, compute_dtype: Any):
        kw = dict(rngs=rngs, pd=param_dtype, cd=compute_dtype)
        H, F = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = _dense(H, F, bias=False, **kw)
        self.up_proj = _dense(H, F, bias=False, **kw)
        self.down_proj = _dense(F, H, bias=False, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        with jax.named_scope("mlp"):
            return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))
