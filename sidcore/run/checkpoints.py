"""Open a checkpoint by URI, whatever store holds it.

Accepted forms: a run directory or a store URI such as ``gs://bucket/prefix`` (optionally
``#name``, default: ``best`` if present, else ``last``), or a bare reference-port file
``.../sft_state_<name>.msgpack`` (``{"step", "params"}`` as written by MLLM-JAX). The store is the
one that registered the URI's scheme (`sidcore.registry.Registry.store_for_uri`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sidcore.errors import CheckpointError
from sidcore.files import read_msgpack_file
from sidcore.registry import Registry, uri_scheme


def split_uri(uri: str) -> tuple[str, str | None]:
    base, _, name = uri.partition("#")
    return base, name or None


def store_for(uri: str, registry: Registry) -> Any:
    """The store serving `uri`, built with its default options."""
    spec = registry.store_for_uri(uri)
    return spec.build(spec.config(), uri=uri)


def read_reference_file(path: Path) -> dict[str, Any]:
    """A bare reference-port msgpack file -> ``{"params": flat}`` (nested params flattened)."""
    from sidcore.model.hf_params import flatten_params

    payload = read_msgpack_file(path)
    if "params" not in payload:
        raise CheckpointError(f"{path}: msgpack checkpoint has no 'params'")
    return {"params": flatten_params(payload["params"])}


def open_checkpoint(uri: str, registry: Registry) -> tuple[dict[str, Any], str]:
    """Return ``(tree, source)`` for a checkpoint URI."""
    base, name = split_uri(uri)
    p = Path(base)
    if uri_scheme(base) == "file" and p.is_file():
        return read_reference_file(p), str(p)
    store = store_for(base, registry)
    names = store.names()
    if name is None:
        name = "best" if "best" in names else "last" if "last" in names else None
    if name is None or name not in names:
        hint = " (name a checkpoint with '#', e.g. runs/x#last)" if ":" in Path(base).name else ""
        raise CheckpointError(
            f"{base}: no checkpoint {name or 'best/last'} (found: {', '.join(names) or 'none'}){hint}")
    tree, _meta = store.restore(name)
    return tree, f"{base}#{name}"
