"""Architecture config of the Qwen2/Qwen2.5 and Qwen3 decoders and its translation to/from HF `config.json`.

`Qwen2Config` is a frozen attrs class holding only the numbers that change the math; its
`model_type` picks the family (``qwen2``: q/k/v bias; ``qwen3``: no bias, per-head q/k RMSNorm before
RoPE, explicit `head_dim`). `from_hf_config`
reads a transformers `config.json` dict through an explicit allow-list (penzai style): every key is
either *handled* (mapped onto a field or checked to hold the one supported value) or *ignored*
(provably irrelevant to the forward pass). Any other key fails loudly with `ConfigError`, so a
checkpoint using a feature we do not implement (sliding window, M-RoPE, YaRN, ...) is never run with
silently wrong math. In particular a missing RoPE theta is an error, never a 10000 fallback
(reference-spec §11.2 item 11: Qwen2.5 needs 1e6).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import attrs

from sidcore.errors import ConfigError

__all__ = [
    "Qwen2Config", "MODEL_TYPES", "PRESETS", "from_hf_config", "to_hf_config", "HANDLED_HF_KEYS",
    "IGNORED_HF_KEYS",
]


MODEL_TYPES = ("qwen2", "qwen3")


def _positive(_inst: Any, attribute: attrs.Attribute, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"Qwen2Config.{attribute.name} must be > 0, got {value}")


def _model_type(_inst: Any, _attribute: attrs.Attribute, value: str) -> None:
    if value not in MODEL_TYPES:
        raise ConfigError(f"Qwen2Config.model_type must be one of {list(MODEL_TYPES)}, got {value!r}")


@attrs.frozen(kw_only=True)
class Qwen2Config:
    """Qwen2 / Qwen3 architecture numbers (everything that changes the forward pass).

    Attributes:
        model_type: ``"qwen2"`` (Qwen2, Qwen2.5: q/k/v bias) or ``"qwen3"`` (no attention bias,
            RMSNorm over each query/key head before RoPE).
        vocab_size: rows of the embedding (possibly padded for sharding).
        hidden_size: model width H.
        intermediate_size: SwiGLU inner width F.
        num_hidden_layers: decoder layers.
        num_attention_heads: query heads.
        num_key_value_heads: key/value heads (GQA; must divide the query heads).
        head_dim: per-head width; ``None`` means ``hidden_size // num_attention_heads``.
        rope_theta: RoPE base frequency (Qwen2.5: 1e6).
        rms_norm_eps: RMSNorm epsilon.
        tie_word_embeddings: logits use the embedding matrix (no separate lm_head).
        max_position_embeddings: informational maximum context (not enforced by the math).
    """

    vocab_size: int = attrs.field(validator=_positive)
    hidden_size: int = attrs.field(validator=_positive)
    intermediate_size: int = attrs.field(validator=_positive)
    num_hidden_layers: int = attrs.field(validator=_positive)
    num_attention_heads: int = attrs.field(validator=_positive)
    num_key_value_heads: int = attrs.field(validator=_positive)
    head_dim: int | None = None
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    max_position_embeddings: int = 32768
    model_type: str = attrs.field(default="qwen2", validator=_model_type)

    def __attrs_post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"Qwen2Config: num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"Qwen2Config: hidden_size={self.hidden_size} not divisible by "
                f"num_attention_heads={self.num_attention_heads} (give head_dim explicitly)"
            )
        if self.resolved_head_dim % 2:
            raise ConfigError(f"Qwen2Config: head_dim must be even for RoPE, got {self.resolved_head_dim}")

    @property
    def resolved_head_dim(self) -> int:
        """Per-head width (explicit `head_dim` or hidden/heads)."""
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_attention_heads

    @property
    def qkv_bias(self) -> bool:
        """q/k/v projections carry a bias (Qwen2 family)."""
        return self.model_type == "qwen2"

    @property
    def qk_norm(self) -> bool:
        """Per-head RMSNorm on queries and keys before RoPE (Qwen3 family)."""
        return self.model_type == "qwen3"

    @property
    def num_groups(self) -> int:
        """Query heads per key/value head."""
        return self.num_attention_heads // self.num_key_value_heads

    def replace(self, **changes: Any) -> Qwen2Config:
        """Return a copy with `changes` applied (validated again)."""
        return attrs.evolve(self, **changes)

    @classmethod
    def tiny(cls, **overrides: Any) -> Qwen2Config:
        """A ~0.1M-parameter model for tests: vocab 256, H 64, 2 layers, 4 heads / 2 KV heads (GQA)."""
        base = dict(
            vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
            tie_word_embeddings=True, max_position_embeddings=2048,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def qwen2_5_0_5b(cls, **overrides: Any) -> Qwen2Config:
        """Qwen2.5-0.5B numbers (tied, vocab 151936, theta 1e6)."""
        base = dict(
            vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
            num_attention_heads=14, num_key_value_heads=2, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
            tie_word_embeddings=True, max_position_embeddings=32768,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def qwen2_5_1_5b(cls, **overrides: Any) -> Qwen2Config:
        """Qwen2.5-1.5B numbers (tied, vocab 151936, theta 1e6)."""
        base = dict(
            vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
            num_attention_heads=12, num_key_value_heads=2, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
            tie_word_embeddings=True, max_position_embeddings=32768,
        )
        base.update(overrides)
        return cls(**base)


    @classmethod
    def tiny_qwen3(cls, **overrides: Any) -> Qwen2Config:
        """`tiny` as a Qwen3: q/k norms, no bias, head_dim 32 (wider than hidden/heads = 16)."""
        return cls.tiny(**{"model_type": "qwen3", "head_dim": 32, **overrides})

    @classmethod
    def qwen3_0_6b(cls, **overrides: Any) -> Qwen2Config:
        """Qwen3-0.6B numbers (tied, vocab 151936, head_dim 128 > 1024/16, theta 1e6).

        Qwen3-Embedding-0.6B is the same architecture with ``vocab_size=151669`` and
        ``max_position_embeddings=32768``.
        """
        base = dict(
            model_type="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
            num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
            rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
            max_position_embeddings=40960,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def qwen3_1_7b(cls, **overrides: Any) -> Qwen2Config:
        """Qwen3-1.7B numbers (tied, vocab 151936, head_dim 128, theta 1e6)."""
        return cls.qwen3_0_6b(**{"hidden_size": 2048, "intermediate_size": 6144, **overrides})

    @classmethod
    def qwen2_5_7b(cls, **overrides: Any) -> Qwen2Config:
        """Qwen2.5-7B numbers (untied, vocab 152064, 28 heads / 4 KV heads, theta 1e6; 7.62B params).

        Source: huggingface.co/Qwen/Qwen2.5-7B config.json and model card ("Number of Parameters: 7.61B").
        """
        base = dict(
            vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
            num_attention_heads=28, num_key_value_heads=4, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
            tie_word_embeddings=False, max_position_embeddings=131072,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def qwen3_8b(cls, **overrides: Any) -> Qwen2Config:
        """Qwen3-8B numbers (untied, vocab 151936, 32 heads / 8 KV heads, head_dim 128; 8.19B params).

        Source: huggingface.co/Qwen/Qwen3-8B config.json and model card ("Number of Parameters: 8.2B").
        """
        return cls.qwen3_0_6b(**{"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
                                 "num_attention_heads": 32, "num_key_value_heads": 8,
                                 "tie_word_embeddings": False, **overrides})


PRESETS: dict[str, Callable[..., Qwen2Config]] = {
    "tiny": Qwen2Config.tiny,
    "tiny_qwen3": Qwen2Config.tiny_qwen3,
    "qwen2_5_0_5b": Qwen2Config.qwen2_5_0_5b,
    "qwen2_5_1_5b": Qwen2Config.qwen2_5_1_5b,
    "qwen3_0_6b": Qwen2Config.qwen3_0_6b,
    "qwen3_1_7b": Qwen2Config.qwen3_1_7b,
    "qwen2_5_7b": Qwen2Config.qwen2_5_7b,
    "qwen3_8b": Qwen2Config.qwen3_8b,
}

# HF key -> our field (copied as is).
_FIELD_KEYS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "intermediate_size": "intermediate_size",
    "num_hidden_layers": "num_hidden_layers",
    "num_attention_heads": "num_attention_heads",
    "num_key_value_heads": "num_key_value_heads",
    "head_dim": "head_dim",
    "rms_norm_eps": "rms_norm_eps",
    "tie_word_embeddings": "tie_word_embeddings",
    "max_position_embeddings": "max_position_embeddings",
}
# Keys that are read/validated by special code below.
_CHECKED_KEYS = {
    "model_type", "attention_bias", "rope_theta", "rope_parameters", "rope_scaling", "hidden_act",
    "attention_dropout",
    "use_sliding_window", "sliding_window", "max_window_layers", "layer_types", "use_mrope",
}
HANDLED_HF_KEYS: frozenset[str] = frozenset(_FIELD_KEYS) | frozenset(_CHECKED_KEYS)

# Keys with no effect on the forward math (ids, bookkeeping, init scale, runtime switches).
IGNORED_HF_KEYS: frozenset[str] = frozenset({
    "architectures", "auto_map", "bos_token_id", "eos_token_id", "pad_token_id", "initializer_range",
    "torch_dtype", "dtype", "transformers_version", "use_cache", "_name_or_path", "name_or_path",
    "output_attentions", "output_hidden_states", "return_dict", "tokenizer_class", "id2label",
    "label2id", "problem_type", "is_decoder", "is_encoder_decoder", "add_cross_attention",
    "tie_encoder_decoder", "_attn_implementation_autoset", "attn_implementation", "chunk_size_feed_forward",
    "pruned_heads", "cross_attention_hidden_size", "finetuning_task", "task_specific_params",
    "prefix", "sep_token_id", "decoder_start_token_id",
})

_SUPPORTED_MODEL_TYPES = MODEL_TYPES


def _read_rope_theta(d: Mapping[str, Any]) -> float:
    """RoPE theta from top-level `rope_theta` or v5 `rope_parameters` / legacy `rope_scaling`."""
    thetas: list[float] = []
    if d.get("rope_theta") is not None:
        thetas.append(float(d["rope_theta"]))
    for key in ("rope_parameters", "rope_scaling"):
        rp = d.get(key)
        if rp is None:
            continue
        if not isinstance(rp, Mapping):
            raise ConfigError(f"config.json [{key}]: expected a mapping, got {rp!r}")
        rtype = rp.get("rope_type", rp.get("type", "default"))
        if rtype != "default":
            raise ConfigError(f"config.json [{key}.rope_type]: only 'default' RoPE is supported, "
                              f"got {rtype!r}")
        unknown = set(rp) - {"rope_type", "type", "rope_theta"}
        if unknown:
            raise ConfigError(f"config.json [{key}]: unsupported RoPE keys {sorted(unknown)}")
        if rp.get("rope_theta") is not None:
            thetas.append(float(rp["rope_theta"]))
    if not thetas:
        raise ConfigError(
            "config.json [rope_theta]: RoPE theta is missing (no rope_theta / rope_parameters.rope_theta); "
            "refusing to guess (Qwen2.5 uses 1e6)"
        )
    if any(t != thetas[0] for t in thetas):
        raise ConfigError(f"config.json [rope_theta]: conflicting RoPE theta values {thetas}")
    return thetas[0]


def from_hf_config(d: Mapping[str, Any]) -> Qwen2Config:
    """Build a `Qwen2Config` from a transformers `config.json` dict (``model_type`` qwen2 or qwen3).

    ``attention_bias`` is ignored for qwen2 (transformers' Qwen2 always has q/k/v bias) and must be
    false for qwen3; a qwen3 config without ``head_dim`` gets 128, as transformers does.

    Args:
        d: the parsed `config.json`.

    Returns:
        The architecture config.

    Raises:
        ConfigError: unknown `model_type`, missing RoPE theta, non-default RoPE, sliding window
            enabled, `hidden_act != silu`, non-zero attention dropout, M-RoPE, or any key on neither
            the handled nor the ignored list.
    """
    model_type = d.get("model_type")
    if model_type not in _SUPPORTED_MODEL_TYPES:
        raise ConfigError(f"config.json [model_type]: {model_type!r} is not supported (expected one of "
                          f"{list(_SUPPORTED_MODEL_TYPES)})")
    unknown = sorted(k for k in d if k not in HANDLED_HF_KEYS and k not in IGNORED_HF_KEYS)
    if unknown:
        raise ConfigError(f"config.json: unknown attribute(s) {unknown} may change the model math; "
                          "refusing to load (add them to the handled/ignored lists after checking)")
    if d.get("hidden_act", "silu") != "silu":
        raise ConfigError(f"config.json [hidden_act]: only 'silu' is supported, got {d['hidden_act']!r}")
    if float(d.get("attention_dropout", 0.0) or 0.0) != 0.0:
        raise ConfigError(f"config.json [attention_dropout]: must be 0, got {d['attention_dropout']!r}")
    if d.get("use_sliding_window", False):
        raise ConfigError("config.json [use_sliding_window]: sliding-window attention is not supported")
    if d.get("use_mrope", False):
        raise ConfigError("config.json [use_mrope]: multimodal RoPE is not supported")
    if model_type == "qwen3" and d.get("attention_bias", False):
        raise ConfigError("config.json [attention_bias]: Qwen3 with attention bias is not supported")
    layer_types = d.get("layer_types")
    if layer_types is not None and any(t != "full_attention" for t in layer_types):
        raise ConfigError(f"config.json [layer_types]: only 'full_attention' layers are supported, got "
                          f"{sorted(set(layer_types))}")
    missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                           "num_attention_heads") if d.get(k) is None]
    if missing:
        raise ConfigError(f"config.json: missing required key(s) {missing}")
    kwargs: dict[str, Any] = {}
    for hf_key, field in _FIELD_KEYS.items():
        if d.get(hf_key) is not None:
            kwargs[field] = d[hf_key]
    kwargs["model_type"] = model_type
    if model_type == "qwen3":
        kwargs.setdefault("head_dim", 128)  # transformers' Qwen3Config default (not hidden/heads)
    kwargs.setdefault("num_key_value_heads", d["num_attention_heads"])
    kwargs.setdefault("tie_word_embeddings", False)  # transformers' PreTrainedConfig default
    kwargs["rope_theta"] = _read_rope_theta(d)
    try:
        return Qwen2Config(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config.json: invalid value ({e})") from e


def to_hf_config(cfg: Qwen2Config, *, dtype: str = "float32", **extra: Any) -> dict[str, Any]:
    """A transformers Qwen2 / Qwen3 `config.json` dict for `cfg` (readable by transformers v4 and v5).

    Args:
        cfg: the architecture.
        dtype: the stored weight dtype name (`float32`, `bfloat16`, ...).
        **extra: extra keys copied into the dict (e.g. `eos_token_id`).
    """
    out: dict[str, Any] = {
        "architectures": ["Qwen3ForCausalLM" if cfg.model_type == "qwen3" else "Qwen2ForCausalLM"],
        "model_type": cfg.model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "rope_theta": cfg.rope_theta,  # v4 readers
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},  # v5 readers
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "sliding_window": None,
        "use_cache": True,
        "dtype": dtype,
        "torch_dtype": dtype,
    }
    if cfg.model_type == "qwen3":
        out["head_dim"] = cfg.resolved_head_dim  # always: a missing one would read as 128
        out["attention_bias"] = False
    elif cfg.head_dim is not None and cfg.head_dim != cfg.hidden_size // cfg.num_attention_heads:
        out["head_dim"] = cfg.head_dim
    out.update(extra)
    return out
