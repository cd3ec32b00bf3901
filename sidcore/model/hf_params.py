"""HF safetensors <-> NNX parameter mapping, `load_hf` and `export_hf` (numpy only, no torch).

The mapping is one declarative table, `HF_PARAM_TABLE`: each row pairs a transformers tensor name
template with our parameter path template (as produced by ``nnx.to_pure_dict(nnx.state(model,
nnx.Param))`` joined with ``/``) and says whether the tensor is transposed. transformers' `nn.Linear`
stores ``weight [out, in]`` while our dense kernels are ``[in, out]``, so every ``*.weight`` of a
linear layer (q/k/v/o, gate/up/down, lm_head) is transposed; embeddings (``[V, H]`` in both), norm
scales and biases are copied as is. Tied checkpoints carry no ``lm_head.weight`` (and we have no
lm_head param); a stray one in a tied checkpoint is ignored. Qwen3 adds the per-head
``self_attn.q_norm`` / ``k_norm`` scales and has no q/k/v biases. A checkpoint saved from a *base*
model (transformers ``Qwen2Model`` / ``Qwen3Model``, e.g. Qwen3-Embedding: names without the
``model.`` prefix and no LM head) loads too: the prefix is restored, and an untied one needs
``load_hf(..., head=False)``. Shape/name mismatches raise `CheckpointError` naming the tensor.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sidcore.errors import CheckpointError, ConfigError
from sidcore.model.config import Qwen2Config, from_hf_config, to_hf_config
from sidcore.model.modules import Qwen2ForCausalLM

__all__ = [
    "HF_PARAM_TABLE", "hf_to_path", "path_to_hf", "params_from_hf", "params_to_hf", "load_hf", "export_hf",
    "flatten_params", "unflatten_params", "abstract_model", "read_hf_config",
]

log = logging.getLogger(__name__)

# Placeholders usable in the templates and what they match.
_FIELDS = {
    "layer": r"\d+",
    "attn": r"[qkvo]_proj",
    "qkv": r"[qkv]_proj",
    "mlp": r"(?:gate|up|down)_proj",
    "norm": r"(?:input_layernorm|post_attention_layernorm)",
    "qknorm": r"[qk]_norm",
}

#: (transformers name, our parameter path, transposed)
HF_PARAM_TABLE: tuple[tuple[str, str, bool], ...] = (
    ("model.embed_tokens.weight", "model/embed_tokens/embedding", False),  # [V, H] both sides
    ("model.layers.{layer}.self_attn.{attn}.weight", "model/layers/{layer}/self_attn/{attn}/kernel", True),
    ("model.layers.{layer}.self_attn.{qkv}.bias", "model/layers/{layer}/self_attn/{qkv}/bias", False),
    ("model.layers.{layer}.self_attn.{qknorm}.weight", "model/layers/{layer}/self_attn/{qknorm}/scale",
     False),  # Qwen3 only
    ("model.layers.{layer}.mlp.{mlp}.weight", "model/layers/{layer}/mlp/{mlp}/kernel", True),
    ("model.layers.{layer}.{norm}.weight", "model/layers/{layer}/{norm}/scale", False),
    ("model.norm.weight", "model/norm/scale", False),
    ("lm_head.weight", "lm_head/kernel", True),  # [V, H] -> [H, V]; absent when tied
)

# Non-parameter buffers some older checkpoints carry.
_IGNORED_HF = re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")


def _compile(template: str) -> re.Pattern[str]:
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out += re.escape(template[pos:m.start()]) + f"(?P<{m.group(1)}>{_FIELDS[m.group(1)]})"
        pos = m.end()
    return re.compile(out + re.escape(template[pos:]))


_HF_RE = [(_compile(hf), ours, t) for hf, ours, t in HF_PARAM_TABLE]
_OURS_RE = [(_compile(ours), hf, t) for hf, ours, t in HF_PARAM_TABLE]


def hf_to_path(name: str) -> tuple[str, bool] | None:
    """transformers tensor name -> (our path, transposed), or None when unmapped."""
    for rx, ours, transposed in _HF_RE:
        m = rx.fullmatch(name)
        if m:
            return ours.format(**m.groupdict()), transposed
    return None


def path_to_hf(path: str) -> tuple[str, bool] | None:
    """Our parameter path -> (transformers name, transposed), or None when unmapped."""
    for rx, hf, transposed in _OURS_RE:
        m = rx.fullmatch(path)
        if m:
            return hf.format(**m.groupdict()), transposed
    return None


def flatten_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested pure dict -> ``{"a/b/c": leaf}``."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        p = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_params(v, p + "/"))
        else:
            out[p] = v
    return out


def unflatten_params(flat: Mapping[str, Any]) -> dict[Any, Any]:
    """``{"a/0/c": leaf}`` -> nested pure dict (digit segments become int keys, as nnx.List uses)."""
    out: dict[Any, Any] = {}
    for path, v in flat.items():
        node = out
        parts = [int(p) if p.isdigit() else p for p in path.split("/")]
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


def abstract_model(cfg: Qwen2Config, *, param_dtype: Any = jnp.float32, compute_dtype: Any = jnp.float32,
                   remat: bool = False, head: bool = True) -> Qwen2ForCausalLM:
    """A shape-only model (`nnx.eval_shape`): no parameter memory is allocated."""
    return nnx.eval_shape(lambda: Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(0), param_dtype=param_dtype,
                                                   compute_dtype=compute_dtype, remat=remat, head=head))


def _expected_shapes(cfg: Qwen2Config, head: bool = True) -> dict[str, tuple[int, ...]]:
    state = nnx.state(abstract_model(cfg, head=head), nnx.Param)
    return {p: tuple(v.shape) for p, v in flatten_params(nnx.to_pure_dict(state)).items()}


_BASE_NAMES = re.compile(r"(embed_tokens|layers|norm)\.")


def _with_model_prefix(tensors: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
    """Names of a base-model checkpoint (``layers.0...``, no ``model.``) -> causal-LM names."""
    if any(n.startswith("model.") for n in tensors) or not any(_BASE_NAMES.match(n) for n in tensors):
        return tensors
    return {(f"model.{n}" if _BASE_NAMES.match(n) else n): a for n, a in tensors.items()}


def params_from_hf(tensors: Mapping[str, np.ndarray], cfg: Qwen2Config, *, param_dtype: Any = np.float32,
                   source: str = "checkpoint", head: bool = True) -> dict[str, np.ndarray]:
    """Map transformers tensors to our flat ``{path: array}`` (numpy, `param_dtype`).

    Base-model names (no ``model.`` prefix) are accepted. With ``head=False`` an ``lm_head.weight``
    is dropped and none is required.

    Raises:
        CheckpointError: an unexpected, missing or wrongly shaped tensor (named in the message).
    """
    expected = _expected_shapes(cfg, head)
    out: dict[str, np.ndarray] = {}
    for name, arr in _with_model_prefix(tensors).items():
        if _IGNORED_HF.fullmatch(name):
            continue
        mapped = hf_to_path(name)
        tied_head = name == "lm_head.weight" and (cfg.tie_word_embeddings or not head)
        if mapped is None or (mapped[0] not in expected and not tied_head):
            raise CheckpointError(f"{source}: unexpected tensor {name!r} (shape {tuple(arr.shape)})")
        path, transposed = mapped
        if path not in expected:  # lm_head.weight in a tied checkpoint: the embedding is used instead
            log.info("%s: ignoring %s (%s)", source, name,
                     "tie_word_embeddings=true" if cfg.tie_word_embeddings else "loading without the LM head")
            continue
        a = np.asarray(arr)
        a = a.T if transposed else a
        if tuple(a.shape) != expected[path]:
            want = expected[path][::-1] if transposed else expected[path]
            raise CheckpointError(f"{source}: tensor {name!r} has shape {tuple(arr.shape)}, expected {want}")
        out[path] = np.ascontiguousarray(a.astype(param_dtype, copy=False))
    missing = sorted(path_to_hf(p)[0] for p in expected if p not in out)  # type: ignore[index]
    if missing:
        shown = ", ".join(missing[:8]) + (f", ... ({len(missing)} total)" if len(missing) > 8 else "")
        hint = " (a base-model checkpoint without LM head: load it with head=False)" \
            if missing == ["lm_head.weight"] else ""
        raise CheckpointError(f"{source}: missing tensor(s) {shown}{hint}")
    return out


def params_to_hf(flat: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Our flat ``{path: array}`` -> transformers ``{name: array}`` (contiguous numpy)."""
    out: dict[str, np.ndarray] = {}
    for path, v in flat.items():
        mapped = path_to_hf(path)
        if mapped is None:
            raise CheckpointError(f"export: parameter {path!r} has no transformers name")
        name, transposed = mapped
        a = np.asarray(jax.device_get(v))
        out[name] = np.ascontiguousarray(a.T if transposed else a)
    return out


def _resolve(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.is_dir():
        return p
    if p.exists() or str(path).startswith((".", "/", "~")) or str(path).count("/") != 1:
        raise CheckpointError(f"{path}: not a model folder (expected config.json + *.safetensors)")
    from huggingface_hub import snapshot_download  # only for hub ids; never reached in tests

    log.info("resolving hub id %s with snapshot_download", path)
    return Path(snapshot_download(str(path), allow_patterns=["*.json", "*.safetensors"]))


def _safetensor_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{index}: malformed index ({e})") from e
        files = [folder / f for f in dict.fromkeys(weight_map.values())]
    elif (folder / "model.safetensors").exists():
        files = [folder / "model.safetensors"]
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no *.safetensors files")
    for f in files:
        if not f.exists():
            raise CheckpointError(f"{f}: shard listed in the index is missing")
    return files


def _read_config(folder: Path) -> Qwen2Config:
    cfg_file = folder / "config.json"
    if not cfg_file.exists():
        raise CheckpointError(f"{folder}: config.json is missing")
    try:
        return from_hf_config(json.loads(cfg_file.read_text()))
    except ConfigError as e:
        raise ConfigError(f"{cfg_file}: {e}") from e
    except ValueError as e:
        raise ConfigError(f"{cfg_file}: invalid JSON ({e})") from e


def read_hf_config(path: str | os.PathLike[str]) -> Qwen2Config:
    """The architecture of a transformers folder (or hub id) from its `config.json`, weights unread."""
    return _read_config(_resolve(path))


def load_hf(path: str | os.PathLike[str], *, param_dtype: Any = jnp.float32, compute_dtype: Any = jnp.float32,
            remat: bool = False, head: bool = True) -> tuple[Qwen2ForCausalLM, Qwen2Config]:
    """Load a transformers Qwen2 / Qwen3 checkpoint (local folder, or hub id via `snapshot_download`).

    Args:
        path: folder with `config.json` and `model.safetensors` (or a sharded index), or a hub id.
        param_dtype: dtype the parameters are stored in.
        compute_dtype: dtype of matmuls/activations.
        remat: passed to the model.
        head: ``False`` loads the base decoder only (embedding, layers, final norm: what transformers'
            `AutoModel` gives); an untied ``lm_head.weight`` is then neither needed nor loaded.

    Returns:
        (model, config).

    Raises:
        CheckpointError: missing files, unexpected/missing/mis-shaped tensors.
        ConfigError: `config.json` describes math we do not implement.
    """
    from safetensors.numpy import load_file

    folder = _resolve(path)
    cfg = _read_config(folder)
    np_dtype = np.dtype(jnp.dtype(param_dtype))
    tensors: dict[str, np.ndarray] = {}
    for f in _safetensor_files(folder):
        try:
            for name, arr in load_file(str(f)).items():
                if name in tensors:
                    raise CheckpointError(f"{f}: tensor {name!r} appears in two shards")
                tensors[name] = arr.astype(np_dtype, copy=False)
        except CheckpointError:
            raise
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{f}: cannot read safetensors ({e})") from e
    flat = params_from_hf(tensors, cfg, param_dtype=np_dtype, source=str(folder), head=head)
    del tensors
    model = abstract_model(cfg, param_dtype=param_dtype, compute_dtype=compute_dtype, remat=remat, head=head)
    graphdef, state = nnx.split(model)
    nnx.replace_by_pure_dict(state, unflatten_params({k: jnp.asarray(v) for k, v in flat.items()}))
    return nnx.merge(graphdef, state), cfg


def special_token_ids(tokenizer: Any) -> dict[str, int]:
    """``bos/eos/pad_token_id`` of a tokenizer for config.json / generation_config.json. Qwen2.5
    tokenizers have no BOS token; their HF configs use ``<|endoftext|>`` there, so does this."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    bos = tokenizer.bos_token_id
    bos = bos if bos is not None else tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ids = {"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad if pad is not None else eos}
    return {k: int(v) for k, v in ids.items() if isinstance(v, int) and v >= 0}


def export_hf(model: Qwen2ForCausalLM, cfg: Qwen2Config | None, out_dir: str | os.PathLike[str], *,
              extra_config: Mapping[str, Any] | None = None,
              generation_config: Mapping[str, Any] | None = None,
              extra_files: Mapping[str, bytes] | None = None) -> Path:
    """Write `config.json` + `model.safetensors` loadable by `AutoModelForCausalLM.from_pretrained`.

    The folder is written to a temporary sibling and renamed into place (an existing folder is
    replaced only after the new one is complete).

    Args:
        model: the model (parameters must be addressable from this process).
        cfg: its config (default: ``model.cfg``; its vocab must match the parameters).
        out_dir: target folder.
        extra_config: extra `config.json` keys (e.g. ``eos_token_id``).
        generation_config: when given, written as ``generation_config.json`` (``eos_token_id`` there
            is what makes a plain ``generate()`` stop).
        extra_files: more files (name -> bytes) written into the folder before it is moved into place.
    """
    from safetensors.numpy import save_file

    cfg = model.cfg if cfg is None else cfg
    if model.lm_head is None and not cfg.tie_word_embeddings:
        raise CheckpointError("export: the model was loaded without its untied LM head (head=False); "
                              "transformers would initialise lm_head.weight at random")
    flat = flatten_params(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    tensors = params_to_hf(flat)
    emb = tensors["model.embed_tokens.weight"]
    if emb.shape[0] != cfg.vocab_size:
        raise CheckpointError(f"export: embedding has {emb.shape[0]} rows but "
                              f"cfg.vocab_size={cfg.vocab_size}")
    dtype_name = jnp.dtype(emb.dtype).name
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        hf_cfg = to_hf_config(cfg, dtype=dtype_name, **(extra_config or {}))
        (tmp / "config.json").write_text(json.dumps(hf_cfg, indent=2) + "\n")
        if generation_config is not None:
            gen = {"_from_model_config": False, **generation_config}
            (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
        for fname, data in (extra_files or {}).items():
            (tmp / fname).write_bytes(data)
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
