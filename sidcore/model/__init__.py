"""Qwen2/Qwen2.5 and Qwen3 causal LMs in Flax NNX: config, modules, HF weights in/out, vocab, sharding.

Importing this package imports jax and flax (it is the heavy model layer; plugin listing never
touches it). See `docs/model.md` for the supported HF attributes, the weight mapping table and the
KV-cache layout.
"""

from __future__ import annotations

from sidcore.model.config import PRESETS, Qwen2Config, from_hf_config, to_hf_config
from sidcore.model.hf_params import HF_PARAM_TABLE, abstract_model, export_hf, load_hf, read_hf_config
from sidcore.model.modules import Qwen2ForCausalLM, mask_padded_vocab
from sidcore.model.sharding import (
    DEFAULT_RULES,
    ShardingRules,
    make_mesh,
    param_partition_spec,
    param_shardings,
    shard_params,
)
from sidcore.model.vocab import padded_vocab_size, resize_vocab

__all__ = [
    "PRESETS",
    "Qwen2Config",
    "from_hf_config",
    "to_hf_config",
    "Qwen2ForCausalLM",
    "mask_padded_vocab",
    "HF_PARAM_TABLE",
    "abstract_model",
    "load_hf",
    "export_hf",
    "read_hf_config",
    "resize_vocab",
    "padded_vocab_size",
    "DEFAULT_RULES",
    "ShardingRules",
    "make_mesh",
    "param_partition_spec",
    "param_shardings",
    "shard_params",
]
