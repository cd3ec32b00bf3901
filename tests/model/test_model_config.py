"""`Qwen2Config` presets (Qwen2, Qwen3) and the config.json allow-list (`from_hf_config`, `to_hf_config`)."""

from __future__ import annotations

import pytest

from sidcore.errors import ConfigError
from sidcore.model import PRESETS, Qwen2Config, from_hf_config, to_hf_config

# What transformers 5.x writes for a Qwen2 config (rope theta only inside rope_parameters).
V5_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": None, "dtype": "float32",
    "eos_token_id": None, "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02,
    "intermediate_size": 128, "layer_types": ["full_attention", "full_attention"],
    "max_position_embeddings": 32768, "max_window_layers": 28, "model_type": "qwen2",
    "num_attention_heads": 4,
    "num_hidden_layers": 2, "num_key_value_heads": 2, "pad_token_id": None, "rms_norm_eps": 1e-06,
    "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}, "sliding_window": None,
    "tie_word_embeddings": True, "transformers_version": "5.23.0", "use_cache": True,
    "use_sliding_window": False, "vocab_size": 128,
}
# The real Qwen2.5-1.5B config.json (transformers 4.x style, top-level rope_theta).
QWEN25_15B = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 1536, "initializer_range": 0.02,
    "intermediate_size": 8960, "max_position_embeddings": 131072, "max_window_layers": 28,
    "model_type": "qwen2",
    "num_attention_heads": 12, "num_hidden_layers": 28, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.40.1", "use_cache": True, "use_mrope": False, "use_sliding_window": False,
    "vocab_size": 151936,
}
# The real Qwen3-0.6B config.json (transformers 4.51).
QWEN3_06B = {
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 1024,
    "initializer_range": 0.02, "intermediate_size": 3072, "max_position_embeddings": 40960,
    "max_window_layers": 28, "model_type": "qwen3", "num_attention_heads": 16, "num_hidden_layers": 28,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000,
    "sliding_window": None, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0", "use_cache": True, "use_sliding_window": False, "vocab_size": 151936,
}


def test_v5_rope_parameters_are_read():
    cfg = from_hf_config(V5_CONFIG)
    assert cfg.rope_theta == 1e6
    assert cfg == Qwen2Config.tiny(vocab_size=128, max_position_embeddings=32768)


def test_real_qwen25_config_matches_preset():
    cfg = from_hf_config(QWEN25_15B)
    assert cfg == Qwen2Config.qwen2_5_1_5b(max_position_embeddings=131072)
    assert cfg.resolved_head_dim == 128 and cfg.num_groups == 6
    assert from_hf_config(dict(QWEN25_15B, rope_scaling=None)).rope_theta == 1e6


def test_real_qwen3_config_matches_preset():
    cfg = from_hf_config(QWEN3_06B)
    assert cfg == Qwen2Config.qwen3_0_6b()
    assert cfg.model_type == "qwen3" and cfg.qk_norm and not cfg.qkv_bias
    assert cfg.resolved_head_dim == 128 != cfg.hidden_size // cfg.num_attention_heads
    qwen2 = from_hf_config(QWEN25_15B)
    assert qwen2.model_type == "qwen2" and qwen2.qkv_bias and not qwen2.qk_norm
    no_head_dim = {k: v for k, v in QWEN3_06B.items() if k != "head_dim"}
    assert from_hf_config(no_head_dim).head_dim == 128  # transformers' Qwen3 default, not 1024 / 16


def test_presets():
    assert set(PRESETS) == {"tiny", "tiny_qwen3", "qwen2_5_0_5b", "qwen2_5_1_5b", "qwen3_0_6b", "qwen3_1_7b",
                            "qwen2_5_7b", "qwen3_8b"}
    assert PRESETS["tiny_qwen3"]().model_type == "qwen3" and PRESETS["tiny_qwen3"]().resolved_head_dim == 32
    big = PRESETS["qwen3_1_7b"]()
    assert (big.hidden_size, big.intermediate_size, big.num_hidden_layers) == (2048, 6144, 28)
    assert big.head_dim == 128
    tiny = PRESETS["tiny"]()
    assert tiny.vocab_size <= 256 and tiny.hidden_size == 64 and tiny.num_key_value_heads == 2
    small = PRESETS["qwen2_5_0_5b"]()
    assert (small.hidden_size, small.intermediate_size, small.num_hidden_layers) == (896, 4864, 24)
    assert (small.num_attention_heads, small.resolved_head_dim, small.tie_word_embeddings) == (14, 64, True)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"rope_parameters": None}, "theta is missing"),
        ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0}}, "only 'default'"),
        ({"use_sliding_window": True}, "sliding"),
        ({"layer_types": ["full_attention", "sliding_attention"]}, "full_attention"),
        ({"model_type": "llama"}, "model_type"),
        ({"hidden_act": "gelu"}, "silu"),
        ({"attention_dropout": 0.1}, "attention_dropout"),
        ({"use_mrope": True}, "mrope"),
        ({"some_new_math_flag": 1}, "some_new_math_flag"),
        ({"num_key_value_heads": 3}, "multiple"),
    ],
)
def test_unsupported_attributes_raise(change, match):
    with pytest.raises(ConfigError, match=match):
        from_hf_config({**V5_CONFIG, **change})


def test_qwen3_attention_bias_is_refused():
    with pytest.raises(ConfigError, match="attention_bias"):
        from_hf_config({**QWEN3_06B, "attention_bias": True})
    with pytest.raises(ConfigError, match="model_type"):
        Qwen2Config.tiny(model_type="qwen4")


def test_missing_theta_never_falls_back():
    d = dict(QWEN25_15B)
    del d["rope_theta"]
    with pytest.raises(ConfigError, match="rope_theta"):
        from_hf_config(d)


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_to_hf_config_round_trips_and_loads_in_transformers(family):
    cfg = (Qwen2Config.tiny if family == "qwen2" else Qwen2Config.tiny_qwen3)(tie_word_embeddings=False,
                                                                              rope_theta=5e5)
    d = to_hf_config(cfg)
    assert d["model_type"] == family
    assert from_hf_config(d) == cfg
    transformers = pytest.importorskip("transformers")
    hf_cls = transformers.Qwen2Config if family == "qwen2" else transformers.Qwen3Config
    hf = hf_cls(**{k: v for k, v in d.items() if k not in ("architectures", "model_type")})
    assert hf.rope_parameters["rope_theta"] == 5e5 and hf.hidden_size == 64
    assert getattr(hf, "head_dim", None) in (None, cfg.resolved_head_dim)


def test_explicit_head_dim():
    cfg = Qwen2Config.tiny(head_dim=32)
    assert cfg.resolved_head_dim == 32
    assert to_hf_config(cfg)["head_dim"] == 32 and "head_dim" not in to_hf_config(Qwen2Config.tiny())
