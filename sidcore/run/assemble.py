"""Build what a run needs from its config: tokenizer + SID vocabulary, mesh, model, store.

Model rules (upstream semantics): the tokenizer gets the SID tokens of ``index.json`` (sorted as
strings, only the missing ones); the embedding (and an untied head) is resized to exactly
``len(tokenizer)`` (new rows: mean-resizing by default); then the vocabulary is padded to a
multiple of the mesh's ``fsdp*tp`` for sharding, and those padded rows are masked out of every
softmax (training and decoding).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from sidcore.config.schema import RunConfig
from sidcore.errors import ConfigError, DataError
from sidcore.model.bundle import ModelBundle

log = logging.getLogger(__name__)


def dtype(name: str) -> Any:
    import jax.numpy as jnp

    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[name]


def attention_impl(name: str, compute_dtype: Any, head_dim: int) -> str:
    """Resolve ``model.attention`` (auto | xla | cudnn) for this backend and compute dtype."""
    import jax
    import jax.numpy as jnp

    fits = (jax.default_backend() == "gpu" and jnp.dtype(compute_dtype) in (jnp.bfloat16, jnp.float16)
            and head_dim % 8 == 0 and head_dim <= 128)
    if name == "auto":
        return "cudnn" if fits else "xla"
    if name == "cudnn" and not fits:
        raise ConfigError("model.attention=cudnn needs an NVIDIA GPU, jax.compute_dtype bfloat16 or float16 and "
                          f"a head dim that is a multiple of 8 up to 128 (backend {jax.default_backend()}, "
                          f"compute {jnp.dtype(compute_dtype).name}, head dim {head_dim}); use auto or xla")
    return name


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")


def check_model_location(key: str, value: str) -> None:
    """A ``base_model`` / tokenizer that is neither an existing folder nor shaped like a hub id
    (``org/name``) is a one-line error saying there is no such folder (instead of HF's message)."""
    if not value or value == "bundled":
        return
    p = Path(value).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"{key}={value}: not a folder (an HF model folder with config.json is expected)")
        return
    looks_like_path = value.startswith(("/", "./", "../", "~")) or value.count("/") > 1 or "\\" in value
    if looks_like_path or not _HUB_ID.match(value):
        raise ConfigError(f"{key}={value}: no such folder")


def loads_checkpoint(cfg: RunConfig) -> bool:
    """An eval-only run that replaces every parameter from ``train.resume_from_checkpoint``."""
    return cfg.run_mode == "eval" and bool(cfg.train.resume_from_checkpoint)


def build_model(cfg: RunConfig, *, tokenizer_spec: str | None = None,
                weights_from_checkpoint: bool = False) -> ModelBundle:
    """Tokenizer with SID tokens + NNX model (loaded or fresh), resized and padded; plus the mesh.

    With `weights_from_checkpoint` (the caller replaces every parameter, `loads_checkpoint`) a
    preset model is built shape-only (`nnx.eval_shape`) instead of randomly initialised: the init
    program of a 152k-row embedding takes seconds to compile on CPU and its values are discarded.
    """
    import jax
    from flax import nnx

    from sidcore.data.minionerec import read_index
    from sidcore.data.tokenizer import add_sid_tokens, load_tokenizer
    from sidcore.model import Qwen2ForCausalLM, load_hf
    from sidcore.model.config import PRESETS
    from sidcore.model.hf_params import abstract_model
    from sidcore.model.sharding import make_mesh
    from sidcore.model.vocab import padded_vocab_size, resize_vocab

    if jax.default_backend() == "gpu":
        # Same threefry bits through JAX's CUDA kernel: XLA's own lowering inlines the hash into every
        # init fusion, and a Qwen2.5-0.5B random init took 3m18s to compile on an H100 without it.
        jax.config.update("jax_threefry_gpu_kernel_lowering", True)

    check_model_location("base_model", cfg.base_model)
    check_model_location("data.tokenizer", cfg.data.tokenizer or "")
    spec = tokenizer_spec or cfg.data.tokenizer or (cfg.base_model or "bundled")
    tokenizer = load_tokenizer(spec, padding_side=cfg.data.padding_side)
    if cfg.data.sid_index_path is None:
        raise ConfigError("data.sid_index_path is not set (set data.data_dir + data.category, or the path)")
    ext = add_sid_tokens(tokenizer, read_index(cfg.data.sid_index_path))
    if ext.added_tokens and cfg.run_mode == "eval" and not cfg.train.resume_from_checkpoint and cfg.base_model:
        # Evaluating weights that never saw SID tokens would score freshly initialised rows.
        raise DataError(
            f"{cfg.base_model}: its tokenizer lacks the SID tokens of {cfg.data.sid_index_path} "
            f"(e.g. {ext.added_tokens[0]}); evaluate a fine-tuned checkpoint, or pass "
            "train.resume_from_checkpoint=<run dir or store URI>"
        )
    real_vocab = len(tokenizer)
    mesh = make_mesh(cfg.jax.mesh_shape)
    pd, cd = dtype(cfg.jax.param_dtype), dtype(cfg.jax.compute_dtype)
    multiple = cfg.model.vocab_pad_multiple or int(mesh.shape["fsdp"] * mesh.shape["tp"])
    padded = padded_vocab_size(real_vocab, multiple)

    if cfg.base_model and not cfg.train.train_from_scratch:
        model, hf_cfg = load_hf(cfg.base_model, param_dtype=pd, compute_dtype=cd, remat=cfg.model.remat)
    else:
        if cfg.base_model:
            from sidcore.model.hf_params import read_hf_config

            hf_cfg = read_hf_config(cfg.base_model)
        elif cfg.model.preset:
            if cfg.model.preset not in PRESETS:
                raise ConfigError(f"model.preset: unknown preset '{cfg.model.preset}'; available: {', '.join(PRESETS)}")
            hf_cfg = PRESETS[cfg.model.preset]()
        else:
            raise ConfigError("set base_model (HF folder / hub id) or model.preset")
        overrides = dict(cfg.model.overrides)
        overrides["vocab_size"] = real_vocab
        hf_cfg = hf_cfg.replace(**overrides)
        if weights_from_checkpoint and padded == real_vocab:  # nothing to resize: shapes are enough
            model = abstract_model(hf_cfg, param_dtype=pd, compute_dtype=cd, remat=cfg.model.remat)
        else:  # under jit: eager init would compile one tiny XLA program per parameter shape
            model = nnx.jit(lambda: Qwen2ForCausalLM(hf_cfg, rngs=nnx.Rngs(cfg.seed), param_dtype=pd,
                                                     compute_dtype=cd, remat=cfg.model.remat))()
    before = model.vocab_size
    if before != real_vocab:
        model = resize_vocab(model, real_vocab, init=cfg.model.new_token_init, rng_seed=cfg.seed)
    if padded != real_vocab:
        model = resize_vocab(model, padded, init="normal", rng_seed=cfg.seed + 1)
    log.info("vocab: checkpoint %d -> tokenizer %d -> padded %d (multiple %d)", before, real_vocab, padded, multiple)
    model.set_attention(attention_impl(cfg.model.attention, cd, model.cfg.resolved_head_dim))
    return ModelBundle(
        model=model, model_config=model.cfg, tokenizer=tokenizer, token_extension=ext, real_vocab=real_vocab,
        vocab_resize={"original_vocab_size": before, "new_vocab_size": real_vocab, "padded_vocab_size": padded},
        mesh=mesh,
    )


def store_uri(cfg: RunConfig) -> str:
    """Where checkpoints go: ``checkpoint_uri`` if set, else the run directory."""
    return cfg.checkpoint_uri or cfg.output_dir
