"""`sid index embed`: the click command body, to be attached to the `sid index` group.

Usage (attach with ``index_group.add_command(embed_command)``)::

    sid index embed --model Qwen/Qwen3-Embedding-0.6B --data-dir data/Amazon \\
        --category Industrial_and_Scientific --out Industrial.emb-qwen-td.npy
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from sidcore.errors import UsageError

__all__ = ["embed_command"]


def _parse_buckets(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--buckets {text!r}: expected comma-separated integers like 64,128,256") from None
    if not values or min(values) < 1:
        raise UsageError(f"--buckets {text!r}: lengths must be positive")
    return values


def _items_path(items: str | None, data_dir: str | None, category: str | None) -> Path:
    if items and (data_dir or category):
        raise UsageError("give either --items FILE or --data-dir DIR --category C, not both")
    if items:
        return Path(items)
    if not (data_dir and category):
        raise UsageError("say which items to embed: --items FILE, or --data-dir DIR with --category C")
    from sidcore.data.minionerec import split_paths

    return split_paths(data_dir, category)["items"]


def _save_npy(array, out: Path) -> None:
    """Write `array` to `out` atomically (a temporary sibling renamed into place)."""
    import numpy as np

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@click.command("embed")
@click.option("--model", "model_dir", required=True,
              help="transformers folder (or hub id) of a Qwen2/Qwen2.5/Qwen3 model, e.g. Qwen3-Embedding.")
@click.option("--items", type=click.Path(dir_okay=False), help="MiniOneRec <Category>.item.json to embed.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="MiniOneRec data folder; the items are DIR/index/C.item.json.")
@click.option("--category", help="Category name with --data-dir (e.g. Industrial_and_Scientific).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Output .npy: float32 [items, hidden], row i = item i.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Texts per forward pass (rounded up to a multiple of the mesh's data axes).")
@click.option("--max-length", default=2048, show_default=True, type=click.IntRange(min=1),
              help="Tokens kept per item text (truncation), as upstream.")
@click.option("--tokenizer", default=None,
              help="Tokenizer folder / hub id / 'bundled' (default: the model folder's own).")
@click.option("--dtype", "dtype", default="float32", show_default=True,
              type=click.Choice(["float32", "bfloat16", "float16"]),
              help="Weight and matmul dtype (pooling is float32).")
@click.option("--mesh-shape", default="auto", show_default=True, help='Device mesh, e.g. "dp:1,fsdp:8,tp:1".')
@click.option("--buckets", default=None,
              help="Padded lengths, comma-separated (default: powers of two up to --max-length).")
@click.option("--features", default="title,description", show_default=True,
              help="item.json fields joined into each item's text.")
def embed_command(model_dir: str, items: str | None, data_dir: str | None, category: str | None,
                  out_path: str, batch_size: int, max_length: int, tokenizer: str | None, dtype: str,
                  mesh_shape: str, buckets: str | None, features: str) -> None:
    """Embed item texts the MiniOneRec way (masked mean of the last hidden state).

    Each item's text is its cleaned title + description; rows are in item-id order and not
    L2-normalised. The result feeds `sid index build --embeddings`.
    """
    from sidcore.index.embed import embed_items

    item_json = _items_path(items, data_dir, category)
    fields = tuple(f.strip() for f in features.split(",") if f.strip())
    if not fields:
        raise UsageError("--features: give at least one item.json field")
    emb = embed_items(model_dir, item_json, batch_size=batch_size, max_length=max_length, tokenizer=tokenizer,
                      mesh_shape=mesh_shape, param_dtype=dtype, compute_dtype=dtype,
                      buckets=_parse_buckets(buckets), features=fields)
    import jax

    if jax.process_index() == 0:
        out = Path(out_path)
        _save_npy(emb, out)
        click.echo(f"wrote {out}: {emb.shape[0]} items x {emb.shape[1]} float32 ({item_json})")
