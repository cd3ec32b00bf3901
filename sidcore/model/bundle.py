"""`ModelBundle`: a built model with what every stage needs beside it (tokenizer, vocabulary sizes,
mesh). Built by `sidcore.run.assemble.build_model`; used by training, RL, eval, serving and export."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.define(kw_only=True)
class ModelBundle:
    model: Any  # Qwen2ForCausalLM
    model_config: Any  # sid's own `Qwen2Config` of the built model
    tokenizer: Any
    token_extension: Any
    real_vocab: int  # = len(tokenizer); rows >= this are sharding padding
    vocab_resize: dict[str, int]
    mesh: Any


def flops_per_token(model_cfg: Any) -> float:
    """Training FLOPs per token (6 x non-embedding params; label-only logits are a small extra)."""
    h, f, n = model_cfg.hidden_size, model_cfg.intermediate_size, model_cfg.num_hidden_layers
    q = model_cfg.num_attention_heads * model_cfg.resolved_head_dim  # != h for Qwen3 (explicit head_dim)
    kv = model_cfg.num_key_value_heads * model_cfg.resolved_head_dim
    per_layer = h * q * 2 + h * kv * 2 + 3 * h * f
    return 6.0 * per_layer * n
