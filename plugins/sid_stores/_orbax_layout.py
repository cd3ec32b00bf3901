"""How a kernel checkpoint tree maps onto Orbax items and back, exactly (the `orbax` store's codec),
and the check of its JSON commit record.

The kernel's tree is a dict of dicts whose leaves are arrays (numpy or `jax.Array`, possibly
sharded), numpy scalars or plain JSON values; parameter keys are flat paths such as
``"model/layers/0/attn/q/kernel"``. Orbax wants nested dicts of arrays with string keys and no
zero-size arrays, so the tree is split in two:

- the arrays go to Orbax, in item ``params`` (the tree's ``"params"`` subtree) or item ``state``
  (everything else: ``opt_state``, ``ref_params``, ...); every key is turned into a string and
  split at ``/``, so ``{"params": {"a/b": w}}`` is stored as ``params`` = ``{"a": {"b": w}}`` and
  Orbax's own tools show the model's module structure;
- a JSON *layout* records the tree exactly: each dict's keys with their type (str or int), plain
  leaves by value, zero-size arrays by shape and dtype, numpy scalars as such, and for each Orbax
  array its item, path, shape and dtype.

`decode` rebuilds the original tree from the layout and what Orbax restored, so a save/restore
round trip is exact (keys, key types, dtypes, shapes, bytes). Two keys that would land on the same
Orbax path or name (``"a/b"`` next to ``{"a": {"b": ...}}``; ``"a.b"`` next to ``"a/b"``: Orbax
names arrays by their path joined with ``.``) are refused with a `CheckpointError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sidcore.api import CheckpointError, local_path, uri_scheme

PARAMS, STATE = "params", "state"
_PLAIN = (bool, int, float, str, type(None))


def dtype_of(name: str) -> np.dtype:
    """``"float32"`` / ``"bfloat16"`` -> the numpy dtype (ml_dtypes for the non-numpy ones)."""
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))


def _is_array(x: Any) -> bool:
    return isinstance(x, np.ndarray) or (hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "__array__"))


def _parts(keys: tuple[Any, ...], where: str) -> list[str]:
    out: list[str] = []
    for k in keys:
        pieces = str(k).split("/")
        if any(p == "" for p in pieces):
            raise CheckpointError(f"{where}: key {k!r} cannot be stored by orbax (empty path segment)")
        out.extend(pieces)
    return out


def _place(items: dict[str, dict], item: str, path: list[str], value: Any, where: str) -> None:
    node = items.setdefault(item, {})
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise CheckpointError(f"{where}: orbax path {item}/{'/'.join(path)} collides with another key")
        node = child
    if path[-1] in node:
        raise CheckpointError(f"{where}: orbax path {item}/{'/'.join(path)} collides with another key")
    node[path[-1]] = value


def encode(tree: Mapping[str, Any], *, where: str) -> tuple[dict[str, Any], dict[str, dict]]:
    """``tree`` -> (JSON layout, ``{item: nested dict of arrays}``) for Orbax (empty items omitted)."""
    if not isinstance(tree, Mapping):
        raise CheckpointError(f"{where}: a checkpoint tree must be a dict, got {type(tree).__name__}")
    items: dict[str, dict] = {}
    dotted: set[tuple[str, str]] = set()  # orbax names an array by its path joined with "."

    def walk(node: Any, keys: tuple[Any, ...]) -> dict[str, Any]:
        if isinstance(node, Mapping):
            entries = []
            for k, v in node.items():
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise CheckpointError(f"{where}: dict key {k!r} is not a str or int")
                entries.append([k, walk(v, keys + (k,))])
            return {"d": entries}
        if isinstance(node, (list, tuple)):
            return {"l": [walk(v, keys + (i,)) for i, v in enumerate(node)]}
        if isinstance(node, _PLAIN):
            return {"v": node}
        scalar = isinstance(node, np.generic)
        if not (scalar or _is_array(node)):
            raise CheckpointError(f"{where}: leaf {'/'.join(map(str, keys))} is a {type(node).__name__}, "
                                  "not an array or a JSON value")
        arr = np.asarray(node) if scalar or not hasattr(node, "addressable_shards") else node
        dtype = np.dtype(arr.dtype)
        if dtype.kind == "O":
            raise CheckpointError(f"{where}: leaf {'/'.join(map(str, keys))} has dtype object")
        shape = [int(n) for n in arr.shape]
        if int(np.prod(shape)) == 0:  # orbax refuses zero-size arrays; the layout alone restores them
            return {"e": shape, "dtype": dtype.name}
        item = PARAMS if keys and keys[0] == PARAMS else STATE
        path = _parts(keys[1:] if item == PARAMS else keys, where)
        if not path:
            raise CheckpointError(f"{where}: 'params' must be a dict of arrays")
        if (item, ".".join(path)) in dotted:
            raise CheckpointError(f"{where}: orbax name {item}/{'.'.join(path)} collides with another key")
        dotted.add((item, ".".join(path)))
        _place(items, item, path, arr, where)
        return {"i": item, "p": path, "shape": shape, "dtype": dtype.name, **({"g": True} if scalar else {})}

    layout = walk(tree, ())
    return layout, items


def array_nodes(layout: Mapping[str, Any], keys: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], dict]]:
    """``(tree keys, node)`` of every Orbax-stored array in a layout."""
    if "d" in layout:
        for k, child in layout["d"]:
            yield from array_nodes(child, keys + (k,))
    elif "l" in layout:
        for i, child in enumerate(layout["l"]):
            yield from array_nodes(child, keys + (i,))
    elif "i" in layout:
        yield keys, layout


def param_key(keys: tuple[Any, ...]) -> str:
    """Tree keys ``("params", "a/b/c")`` -> the kernel's parameter key ``"a/b/c"``."""
    return "/".join(str(k) for k in keys[1:])


def restore_args(layout: Mapping[str, Any], item: str, shardings: Mapping[str, Any] | None) -> dict:
    """Orbax restore arguments of one item: numpy arrays, or `jax.Array` s placed by `shardings`:
    ``{param key "a/b/c": Sharding}`` for ``params``, and for any other leaf its whole tree path
    (``"opt_state/0/mu/model/embed/embedding"``), so a resume need not load the optimizer state whole."""
    import orbax.checkpoint as ocp

    out: dict[str, dict] = {}
    for keys, node in array_nodes(layout):
        if node["i"] != item:
            continue
        key = param_key(keys) if item == PARAMS else "/".join(str(k) for k in keys)
        sharding = shardings.get(key) if shardings else None
        if sharding is not None:
            arg: Any = ocp.ArrayRestoreArgs(sharding=sharding, global_shape=tuple(node["shape"]),
                                            dtype=dtype_of(node["dtype"]))
        else:
            arg = ocp.RestoreArgs(restore_type=np.ndarray)
        _place(out, item, node["p"], arg, "restore")
    return out.get(item, {})


def decode(layout: Mapping[str, Any], restored: Mapping[str, Any], *, params_only: bool,
           where: str) -> dict[str, Any]:
    """Rebuild the tree from its layout and the restored items (``params_only``: keep ``params``)."""

    def fetch(node: Mapping[str, Any]) -> Any:
        value: Any = restored.get(node["i"], {})
        for part in node["p"]:
            if not isinstance(value, Mapping) or part not in value:
                raise CheckpointError(f"{where}: orbax item {node['i']} lacks {'/'.join(node['p'])}")
            value = value[part]
        if list(value.shape) != node["shape"] or np.dtype(value.dtype).name != node["dtype"]:
            raise CheckpointError(f"{where}: {node['i']}/{'/'.join(node['p'])} is {value.dtype}{list(value.shape)}, "
                                  f"the record says {node['dtype']}{node['shape']}")
        return np.asarray(value)[()] if node.get("g") else value

    def build(node: Mapping[str, Any]) -> Any:
        if "d" in node:
            return {k: build(child) for k, child in node["d"]}
        if "l" in node:
            return [build(child) for child in node["l"]]
        if "v" in node:
            return node["v"]
        if "e" in node:
            return np.zeros(node["e"], dtype_of(node["dtype"]))
        return fetch(node)

    if "d" not in layout:
        raise CheckpointError(f"{where}: the record's layout is not a dict tree")
    return {k: build(child) for k, child in layout["d"] if not params_only or k == PARAMS}


def parse_record(raw: bytes, fmt: str, *, where: str) -> dict[str, Any]:
    """A commit record's JSON, checked: format tag, ``meta``, ``layout`` and ``items``."""
    import json

    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{where}: unreadable checkpoint record ({exc})") from None
    if (not isinstance(record, dict) or record.get("format") != fmt or not isinstance(record.get("meta"), dict)
            or not isinstance(record.get("layout"), dict) or not isinstance(record.get("items"), list)):
        raise CheckpointError(f"{where}: not a {fmt} checkpoint record")
    return record


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def root_of(uri: str) -> Any:
    """A path object for the store root: `pathlib.Path` locally, `etils.epath.Path` for gs://."""
    uri = uri.removeprefix("orbax+")  # orbax+gs://b/p: orbax checkpoints on GCS, named as such
    if uri_scheme(uri) == "gs":
        from etils import epath

        return epath.Path(uri.rstrip("/"))
    return Path(local_path(uri)).expanduser()
