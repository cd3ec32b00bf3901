"""Item-text embeddings as MiniOneRec makes them, computed with sid's own JAX model.

Upstream (`rq/text2emb/amazon_text2emb.py` + `utils.clean_text`) builds one text per item from
``title`` and ``description`` of ``item.json``, runs `transformers.AutoModel` (the base decoder, no
LM head) on right-padded batches and takes the **masked mean of the last hidden state** (after the
final norm; no L2 normalisation); rows are written in item-id order to a ``.npy``. Here:

* `clean_text` reproduces upstream's field cleaning, quirks included: HTML entities unescaped,
  tags ``</?name ...>`` removed, ``"`` / ``\\n`` / ``\\r`` dropped; a run of trailing dots becomes
  one dot and a text without one gets one (so an empty field becomes ``"."``; the first character
  is never counted as a trailing dot, so ``".."`` stays ``".."``); a result of 2000 characters or
  more becomes ``""`` (the field is dropped, not cut). A list is cleaned element-wise and
  space-joined, a dict is cleaned as its ``str()`` without the braces.
* `item_text` strips each cleaned field, skips empty ones, space-joins the rest, and falls back to
  ``"unknown item"``. A missing key (or a JSON ``null``) is skipped.
* `embed_texts` tokenizes with truncation at ``max_length`` (the tokenizer's own special-token
  rule, as upstream), right-pads each text into the smallest length bucket that fits (one compile
  per bucket), shards each batch over the mesh's data axes (``dp``, ``fsdp``) like eval, and pools
  in float32.

Upstream's current script embeds each whole text, as sid does (its older commits transposed
batches with ``zip(*texts)`` and embedded single characters). The one difference left is the
forward precision: upstream runs the model in float16 (its pooled vectors come out float32, the
float16 hidden states times a float32 mask); sid computes in ``compute_dtype`` (float32 by
default) and saves float32.
"""

from __future__ import annotations

import functools
import html
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sidcore.errors import ConfigError, DataError, file_error

__all__ = [
    "FEATURES", "UNKNOWN_ITEM", "MAX_FIELD_CHARS", "clean_text", "item_text", "read_item_texts",
    "length_buckets", "embed_texts", "embed_items", "pool_hidden",
]

log = logging.getLogger(__name__)

FEATURES = ("title", "description")
UNKNOWN_ITEM = "unknown item"
MAX_FIELD_CHARS = 2000  # a cleaned field this long (or longer) is dropped entirely, as upstream

_TAG = re.compile(r"</?\w+[^>]*>")
_DROPPED_CHARS = str.maketrans("", "", '"\n\r')


def _strip_markup(text: str) -> str:
    return _TAG.sub("", html.unescape(text)).translate(_DROPPED_CHARS)


def _end_with_one_dot(text: str) -> str:
    """Replace the run of trailing dots by one dot (add one if none); text[0] never counts."""
    run = len(text) - len(text.rstrip("."))
    run = min(run, max(len(text) - 1, 0))
    return text[: len(text) - run] + "."


def clean_text(raw: Any) -> str:
    """One item field cleaned the upstream way (module docstring); returns ``""`` for a too-long field."""
    if isinstance(raw, list):
        text = " ".join(_strip_markup(str(part)).strip() for part in raw)
    else:
        text = str(raw)[1:-1] if isinstance(raw, dict) else str(raw)
        text = _strip_markup(text.strip())
    text = _end_with_one_dot(text)
    return "" if len(text) >= MAX_FIELD_CHARS else text


def item_text(item: Mapping[str, Any], features: Sequence[str] = FEATURES) -> str:
    """The text embedded for one item: cleaned, non-empty `features` space-joined, or ``"unknown item"``."""
    parts = []
    for key in features:
        if item.get(key) is None:
            continue
        cleaned = clean_text(item[key]).strip()
        if cleaned:
            parts.append(cleaned)
    return " ".join(parts) if parts else UNKNOWN_ITEM


def read_item_texts(path: str | os.PathLike[str], features: Sequence[str] = FEATURES) -> list[str]:
    """Texts of a MiniOneRec ``item.json`` in item-id order (row i = item ``"i"``).

    Raises:
        DataError: unreadable file, a key that is not a non-negative integer, ids that are not
            exactly ``0 .. n-1``, or an entry that is not a JSON object.
    """
    from sidcore.data.minionerec import read_json_object

    path = Path(path)
    data = read_json_object(path)
    if not data:
        raise file_error(path, "no items")
    by_id: dict[int, str] = {}
    for key, value in data.items():
        if not (isinstance(key, str) and key.isdigit()):
            raise file_error(path, "item ids must be non-negative integers", key=key)
        if not isinstance(value, dict):
            raise file_error(path, f"expected an object with {', '.join(features)}, got {value!r:.60}",
                             key=key)
        by_id[int(key)] = item_text(value, features)
    missing = sorted(set(range(len(by_id))) - set(by_id))
    if missing:
        raise file_error(path, f"item ids must be 0..{len(by_id) - 1} (one row per item); "
                         f"missing {missing[0]} (max id {max(by_id)})")
    fields = {k for value in data.values() for k in value}
    unknown = [f for f in features if f not in fields]
    if unknown:
        from sidcore.registry import suggest

        raise file_error(path, f"no item has the field {unknown[0]!r}{suggest(unknown[0], sorted(fields))} "
                         f"(--features); fields present: {', '.join(sorted(fields))}")
    return [by_id[i] for i in range(len(by_id))]


def length_buckets(max_length: int, smallest: int = 16) -> tuple[int, ...]:
    """Padded lengths used: powers of two from `smallest` below `max_length`, then `max_length`."""
    out, b = [], smallest
    while b < max_length:
        out.append(b)
        b *= 2
    return (*out, max_length)


def pool_hidden(model: Any, input_ids: Any, mask: Any) -> Any:
    """Masked mean over the sequence of the final-norm hidden states: ``[B, L]`` -> ``[B, H]`` f32.

    Rows are right-padded (``mask`` 1 on real tokens), so positions are ``0 .. n-1`` as in an
    unpadded forward; an all-padding row pools to zeros.
    """
    import jax.numpy as jnp

    seg = mask.astype(jnp.int32)  # [B, L]
    positions = jnp.maximum(jnp.cumsum(seg, axis=-1) - 1, 0)
    h = model.hidden(input_ids, positions, seg).astype(jnp.float32)  # [B, L, H]
    w = seg.astype(jnp.float32)[..., None]  # [B, L, 1]
    return jnp.sum(h * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)


def _pool_fn(graphdef: Any) -> Callable[..., Any]:
    import jax
    from flax import nnx

    def run(state, ids, mask):
        with jax.named_scope("embed_pool"):
            return pool_hidden(nnx.merge(graphdef, state), ids, mask)

    return jax.jit(run)


def _bucket_of(n: int, buckets: Sequence[int]) -> int:
    return next(b for b in buckets if b >= n)


def embed_texts(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 32,
                max_length: int = 2048, mesh: Any = None, buckets: Sequence[int] | None = None,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Pooled embeddings ``[len(texts), H]`` float32 of `texts`, in order.

    Args:
        model: a `sidcore.model.Qwen2ForCausalLM` (an LM head is not needed).
        tokenizer: its HF tokenizer.
        texts: one string per row.
        batch_size: rows per forward (rounded up to a multiple of the mesh's ``dp * fsdp``).
        max_length: tokens kept per text (truncation, as upstream's ``max_length``).
        mesh: a ``("dp", "fsdp", "tp")`` mesh (default: `make_mesh("auto")`); parameters are
            sharded by the reference rules and each batch over the data axes.
        buckets: padded lengths (default `length_buckets(max_length)`); values above
            `max_length` are dropped and `max_length` is always added.
        progress: called with (rows done, rows total) after each batch.
    """
    from flax import nnx

    from sidcore.model.sharding import make_mesh, put_batch, shard_params, to_host

    if batch_size < 1:
        raise ConfigError(f"embed: batch_size must be >= 1, got {batch_size}")
    if max_length < 1:
        raise ConfigError(f"embed: max_length must be >= 1, got {max_length}")
    if not texts:
        raise DataError("embed: no texts to embed")
    sizes = sorted({int(b) for b in (buckets or length_buckets(max_length)) if 0 < int(b) <= max_length}
                   | {max_length})
    mesh = make_mesh("auto") if mesh is None else mesh
    replicas = int(mesh.shape["dp"] * mesh.shape["fsdp"])
    rows = -(-batch_size // replicas) * replicas
    ids_list = tokenizer(list(texts), max_length=max_length, truncation=True, padding=False)["input_ids"]
    empty = [i for i, ids in enumerate(ids_list) if not ids]
    if empty:
        raise DataError(f"embed: text {empty[0]} ({texts[empty[0]]!r:.40}) tokenizes to no tokens")
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    graphdef, state = nnx.split(model)
    state = shard_params(state, mesh)
    fn = _pool_fn(graphdef)
    by_bucket: dict[int, list[int]] = {}
    for i, ids in enumerate(ids_list):
        by_bucket.setdefault(_bucket_of(len(ids), sizes), []).append(i)
    out = np.zeros((len(texts), model.cfg.hidden_size), np.float32)
    done = 0
    for bucket, idxs in sorted(by_bucket.items()):
        for start in range(0, len(idxs), rows):
            chunk = idxs[start: start + rows]
            ids = np.full((rows, bucket), pad_id, np.int32)
            mask = np.zeros((rows, bucket), np.int32)
            for r, i in enumerate(chunk):
                ids[r, : len(ids_list[i])] = ids_list[i]
                mask[r, : len(ids_list[i])] = 1
            batch = put_batch({"ids": ids, "mask": mask}, mesh, axis=0)
            pooled = to_host(fn(state, batch["ids"], batch["mask"]))  # [rows, H]
            out[chunk] = pooled[: len(chunk)]
            done += len(chunk)
            if progress is not None:
                progress(done, len(texts))
    log.info("embedded %d texts (H=%d); padded lengths used (one compile each): %s", len(texts),
             out.shape[1], sorted(by_bucket))
    return out


def _load(model_dir: str | os.PathLike[str], tokenizer: str | None, param_dtype: str,
          compute_dtype: str) -> tuple[Any, Any]:
    from sidcore.data.tokenizer import load_tokenizer
    from sidcore.model import load_hf

    dtypes = _dtypes()
    for name, value in (("param_dtype", param_dtype), ("compute_dtype", compute_dtype)):
        if value not in dtypes:
            raise ConfigError(f"embed: {name} must be one of {sorted(dtypes)}, got {value!r}")
    model, _ = load_hf(model_dir, param_dtype=dtypes[param_dtype], compute_dtype=dtypes[compute_dtype],
                       head=False)
    tok = load_tokenizer(str(model_dir) if tokenizer is None else tokenizer, padding_side="right")
    return model, tok


@functools.cache
def _dtypes() -> dict[str, Any]:
    import jax.numpy as jnp

    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def embed_items(model_dir_or_bundle: Any, item_json_path: str | os.PathLike[str], *, batch_size: int = 32,
                max_length: int = 2048, tokenizer: str | None = None, mesh: Any = None,
                mesh_shape: str = "auto", param_dtype: str = "float32", compute_dtype: str = "float32",
                buckets: Sequence[int] | None = None, features: Sequence[str] = FEATURES,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Embeddings ``[n_items, H]`` float32 of a MiniOneRec ``item.json``, row i = item ``"i"``.

    Args:
        model_dir_or_bundle: a transformers folder (or hub id) that `sidcore.model.load_hf` reads
            (Qwen2/Qwen2.5 or Qwen3, incl. base-model checkpoints such as Qwen3-Embedding; loaded
            without LM head), or a `sidcore.model.bundle.ModelBundle` (its model, tokenizer and mesh).
        item_json_path: the ``<Category>.item.json``.
        batch_size: rows per forward pass.
        max_length: tokens kept per item text (upstream default 2048).
        tokenizer: tokenizer spec for a folder (default: the folder itself; ``"bundled"`` = the
            bundled Qwen2.5 tokenizer). Not used with a bundle.
        mesh: a mesh to use; default: the bundle's, else `make_mesh(mesh_shape)`.
        mesh_shape: mesh for a folder when `mesh` is not given.
        param_dtype: storage dtype of the loaded weights (``float32``, ``bfloat16``, ``float16``).
        compute_dtype: matmul dtype (pooling is always float32).
        buckets: padded lengths (default powers of two up to `max_length`).
        features: item fields joined into the text (upstream: title, description).
        progress: called with (rows done, rows total).

    Raises:
        SidError: a bad item file, model folder, tokenizer or option (one-line message).
    """
    texts = read_item_texts(item_json_path, features)
    if isinstance(model_dir_or_bundle, (str, os.PathLike)):
        model, tok = _load(model_dir_or_bundle, tokenizer, param_dtype, compute_dtype)
        if mesh is None:
            from sidcore.model.sharding import make_mesh

            mesh = make_mesh(mesh_shape)
    elif hasattr(model_dir_or_bundle, "model") and hasattr(model_dir_or_bundle, "tokenizer"):
        model, tok = model_dir_or_bundle.model, model_dir_or_bundle.tokenizer
        mesh = mesh if mesh is not None else getattr(model_dir_or_bundle, "mesh", None)
    else:
        raise ConfigError("embed: expected a model folder or a ModelBundle, got "
                          f"{type(model_dir_or_bundle).__name__}")
    return embed_texts(model, tok, texts, batch_size=batch_size, max_length=max_length, mesh=mesh,
                       buckets=buckets, progress=progress)
