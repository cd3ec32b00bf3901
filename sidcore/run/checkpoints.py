"""Open a checkpoint by URI, whatever store holds it.

Accepted forms:

- a run directory or a store URI such as ``gs://bucket/prefix``, optionally ``#name`` (default:
  ``best`` if present, else ``last``);
- a sid checkpoint file ``.../sft_state_<name>.msgpack`` with its ``.meta.json`` record beside it
  (= that directory ``#<name>``, checksum-verified);
- a bare params file as the reference port (MLLM-JAX) writes it: ``{"step", "params"}`` msgpack,
  no record (params only);
- an HF folder (``config.json`` + safetensors): `is_hf_folder`; the job loads those as the model's
  weights instead (`sidcore.run.assemble.build_model`).

The store is the one that registered the URI's scheme (`sidcore.registry.Registry.store_for_uri`).
Every failure is a one-line `CheckpointError` that names the file and what is wrong; a damaged
checkpoint is never skipped silently.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs

from sidcore.errors import CheckpointError
from sidcore.files import read_msgpack_file
from sidcore.registry import Registry, local_path, uri_scheme

_SID_FILE = re.compile(r"^sft_state_([a-z][a-z0-9_]*)\.msgpack$")


@attrs.frozen(kw_only=True)
class Opened:
    """A restored checkpoint: its tree, the caller's meta (empty for bare files) and where from."""

    tree: dict[str, Any]
    meta: dict[str, Any]
    source: str


def split_uri(uri: str) -> tuple[str, str | None]:
    base, _, name = uri.partition("#")
    return base, name or None


def store_for(uri: str, registry: Registry) -> Any:
    """The store serving `uri`, built with its default options."""
    spec = registry.store_for_uri(uri)
    return spec.build(spec.config(), uri=uri)


def is_hf_folder(path: str) -> bool:
    p = Path(path)
    return uri_scheme(path) == "file" and p.is_dir() and (p / "config.json").is_file() and (
        any(p.glob("*.safetensors")) or any(p.glob("*.bin")))


def read_reference_file(path: Path) -> dict[str, Any]:
    """A bare reference-port msgpack file -> ``{"params": flat}`` (nested params flattened)."""
    from sidcore.model.hf_params import flatten_params

    payload = read_msgpack_file(path)
    if "params" not in payload:
        raise CheckpointError(f"{path}: msgpack checkpoint has no 'params'")
    return {"params": flatten_params(payload["params"])}


def resolve(uri: str) -> tuple[str, str | None, Path | None]:
    """``uri`` -> (store base, checkpoint name or None, bare file or None); ``file://`` = a local path."""
    base, name = split_uri(local_path(uri))
    p = Path(base)
    if uri_scheme(base) == "file" and p.is_file():
        m = _SID_FILE.match(p.name)
        if m and (p.parent / f"sft_state_{m.group(1)}.meta.json").is_file():
            if name is not None and name != m.group(1):
                raise CheckpointError(f"{uri}: the file is checkpoint '{m.group(1)}', not '#{name}'")
            return str(p.parent), m.group(1), None
        if name is not None:
            raise CheckpointError(f"{uri}: '#{name}' names a checkpoint in a run dir or store, not in a file")
        return base, None, p
    if uri_scheme(base) == "file" and not p.exists():
        raise CheckpointError(f"{base}: no such file or directory")
    return base, name, None


def pick_name(store: Any, base: str, name: str | None) -> str:
    """The checkpoint to open in `store` (default best, else last); damaged ones are errors."""
    names, damaged = store.names(), store.damaged()
    if name is None:
        name = next((n for n in ("best", "last") if n in names or n in damaged), None)
    if name is not None and name in damaged:
        raise CheckpointError(f"{base}#{name} is damaged: {damaged[name]}")
    if name is None or name not in names:
        hint = " (name a checkpoint with '#', e.g. runs/x#last)" if ":" in Path(base).name else ""
        found = ", ".join(names) or "none"
        bad = f"; damaged: {', '.join(sorted(damaged))}" if damaged else ""
        raise CheckpointError(f"{base}: no checkpoint {name or 'best/last'} (found: {found}{bad}){hint}")
    return name


def open_checkpoint(uri: str, registry: Registry, *, params_only: bool = False) -> Opened:
    """Restore the checkpoint a URI names (see the module docstring for the accepted forms);
    `params_only` (eval, export, an RL start) lets a store skip the optimizer state."""
    base, name, bare = resolve(uri)
    if bare is not None:
        return Opened(tree=read_reference_file(bare), meta={}, source=str(bare))
    store = store_for(base, registry)
    name = pick_name(store, base, name)
    tree, meta = store.restore(name, params_only=params_only)
    return Opened(tree=tree, meta=dict(meta), source=f"{base}#{name}")


def check_own_store(uri: str, store_name: str, registry: Registry) -> None:
    """Refuse a run whose configured store is not the one holding the checkpoints already at `uri`
    (e.g. ``--store orbax`` over a folder of msgpack checkpoints): it would neither see nor resume
    them, and would train from scratch beside them."""
    other = registry.store_for_uri(uri)
    if other.name == store_name:
        return
    try:
        found = other.build(other.config(), uri=uri).names()
    except Exception:  # noqa: BLE001 - a store that cannot even list: nothing of its kind to protect
        found = []
    if found:
        raise CheckpointError(
            f"{uri} holds {other.name} checkpoints ({', '.join(found)}) but this run's store is {store_name}: "
            f"pass --store {other.name} to resume them, or use another output_dir (sid checkpoint convert "
            "turns one store's checkpoints into another's)")
