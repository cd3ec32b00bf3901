"""Open a checkpoint by URI, whatever store holds it.

Accepted forms: a run directory or ``gs://bucket/prefix`` (optionally ``#name``, default: ``best``
if present, else ``last``), or a bare reference-port file ``.../sft_state_<name>.msgpack``
(``{"step", "params"}`` as written by MLLM-JAX). The store component is chosen by scheme
(``gs://`` -> ``gcs``, otherwise ``msgpack``) through the plugin registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sidcore.errors import CheckpointError


def split_uri(uri: str) -> tuple[str, str | None]:
    base, _, name = uri.partition("#")
    return base, name or None


def store_for(uri: str, registry: Any) -> Any:
    kind = "gcs" if uri.startswith("gs://") else "msgpack"
    spec = registry.get("store", kind)
    return spec.build(spec.config(), uri=uri)


def read_reference_file(path: Path) -> dict[str, Any]:
    """A bare reference-port msgpack file -> ``{"params": flat}`` (nested params flattened)."""
    from flax import serialization

    from sidcore.model.hf_params import flatten_params

    try:
        payload = serialization.msgpack_restore(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - msgpack raises several types
        raise CheckpointError(f"{path}: not a readable msgpack checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or "params" not in payload:
        raise CheckpointError(f"{path}: msgpack checkpoint has no 'params'")
    return {"params": flatten_params(payload["params"])}


def open_checkpoint(uri: str, registry: Any | None = None) -> tuple[dict[str, Any], str]:
    """Return ``(tree, source)`` for a checkpoint URI."""
    base, name = split_uri(uri)
    p = Path(base)
    if not base.startswith("gs://") and p.is_file():
        return read_reference_file(p), str(p)
    if registry is None:
        from sidcore.plugins import load_plugins

        registry = load_plugins().registry
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
