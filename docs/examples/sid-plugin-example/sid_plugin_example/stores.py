"""The example's checkpoint store ``npz_dir``: one ``<name>.npz`` per checkpoint (numpy's own
format, no pickle) and a ``<name>.json`` commit record written last, both atomically.

It is a *byte* store (``sharded = False``): the kernel gathers the tree onto the host and calls
`save` on process 0 only. Register it for a URI scheme of its own (``npz://path``) so that sid sends
exactly those URIs here; a plain path stays with the built-in ``msgpack`` store.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sidcore.api import CheckpointError
from sid_plugin_example.config import NpzDirConfig

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SEP = "\x1f"  # joins nested keys into one npz member name
_NATIVE = {np.dtype(c).name for c in "?bhilqBHILQefdgFDG"}  # dtypes npz stores as themselves


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, val in tree.items():
        if _SEP in str(key):
            raise CheckpointError(f"npz_dir: key {key!r} contains the separator character")
        path = f"{prefix}{_SEP}{key}" if prefix else str(key)
        if isinstance(val, Mapping):
            out.update(_flatten(val, path) if val else {path + _SEP + "{}": np.zeros(0, np.uint8)})
        else:
            arr = np.asarray(val)
            # npz knows numpy's own dtypes only: bfloat16 & co. travel as raw bytes (see _flatten_kinds)
            out[path] = arr.view(f"u{arr.dtype.itemsize}") if arr.dtype.name not in _NATIVE else arr
    return out


def _unflatten(flat: Mapping[str, np.ndarray], kinds: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, arr in flat.items():
        parts = path.split(_SEP)
        node = tree
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        if parts[-1] == "{}":
            continue
        kind = kinds.get(path, "array")
        if kind.startswith("dtype:"):
            import ml_dtypes

            arr = arr.view(np.dtype(getattr(ml_dtypes, kind[6:])))
        node[parts[-1]] = int(arr) if kind == "int" else float(arr) if kind == "float" else arr
    return tree


class NpzDirStore:
    """A directory of ``<name>.npz`` + ``<name>.json`` (the commit record: sha256, meta)."""

    sharded = False

    def __init__(self, cfg: NpzDirConfig, *, uri: str) -> None:
        self.uri = uri
        self.cfg = cfg
        self.root = Path(uri.removeprefix("npz://"))

    def _check(self, name: str) -> str:
        if not _NAME.match(name or ""):
            raise CheckpointError(f"{self.uri}: bad checkpoint name {name!r} (snake_case)")
        return name

    def _publish(self, path: Path, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if self.cfg.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def save(self, name: str, tree: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        self._check(name)
        flat = _flatten(tree)
        kinds = _flatten_kinds(tree)
        buf = io.BytesIO()
        np.savez(buf, **flat)
        data = buf.getvalue()
        self._publish(self.root / f"{name}.npz", data)
        record = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "kinds": kinds, "meta": dict(meta)}
        self._publish(self.root / f"{name}.json", json.dumps(record).encode())  # last: the commit marker

    def wait(self) -> None:
        """Writes are synchronous: nothing is pending."""

    def _record(self, name: str) -> dict[str, Any]:
        try:
            return json.loads((self.root / f"{name}.json").read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{self.uri}#{name}: no such checkpoint") from None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{self.uri}#{name}: unreadable commit record ({exc})") from None

    def restore(self, name: str, *, params_only: bool = False, shardings: Any = None) -> tuple[dict, dict]:
        self._check(name)
        record = self._record(name)
        try:
            data = (self.root / f"{name}.npz").read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"{self.uri}#{name}: payload {name}.npz is missing") from None
        if hashlib.sha256(data).hexdigest() != record.get("sha256"):
            raise CheckpointError(f"{self.uri}#{name}: payload checksum mismatch (damaged)")
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            flat = {k: z[k] for k in z.files}
        tree = _unflatten(flat, record.get("kinds", {}))
        if params_only and "params" in tree:
            tree = {"params": tree["params"]}
        if shardings and isinstance(tree.get("params"), Mapping):
            tree["params"] = _place(tree["params"], shardings)
        return tree, dict(record.get("meta", {}))

    def names(self) -> list[str]:
        """Committed checkpoints whose payload has the recorded size (cheap: no hashing; `restore`
        verifies the sha256, `damaged` reports mismatches)."""
        out = []
        for name in self._committed():
            try:
                record = json.loads((self.root / f"{name}.json").read_text())
                if (self.root / f"{name}.npz").stat().st_size == record.get("size"):
                    out.append(name)
            except (OSError, ValueError):
                continue
        return sorted(out)

    def _committed(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [p.stem for p in self.root.glob("*.json") if _NAME.match(p.stem)]

    def damaged(self) -> dict[str, str]:
        out = {}
        for name in self._committed():
            try:
                record = json.loads((self.root / f"{name}.json").read_text())
                payload = self.root / f"{name}.npz"
                if not payload.is_file():
                    out[name] = "payload missing"
                elif hashlib.sha256(payload.read_bytes()).hexdigest() != record.get("sha256"):
                    out[name] = "payload checksum mismatch"
            except (OSError, ValueError) as exc:
                out[name] = f"unreadable commit record ({exc})"
        return out

    def delete(self, name: str) -> None:
        self._check(name)
        (self.root / f"{name}.json").unlink(missing_ok=True)  # uncommit first
        (self.root / f"{name}.npz").unlink(missing_ok=True)


def _flatten_kinds(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Python scalars are stored as 0-d arrays; remember them so they come back as int/float."""
    out: dict[str, str] = {}
    for key, val in tree.items():
        path = f"{prefix}{_SEP}{key}" if prefix else str(key)
        if isinstance(val, Mapping):
            out.update(_flatten_kinds(val, path))
        elif isinstance(val, np.ndarray | np.generic) and val.dtype.name not in _NATIVE:
            out[path] = "dtype:" + val.dtype.name
        elif isinstance(val, bool) or not isinstance(val, (int, float)):
            continue
        else:
            out[path] = "int" if isinstance(val, int) else "float"
    return out


def _place(params: Mapping[str, Any], shardings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Params named ``"a/b/c"`` in `shardings` become jax.Arrays placed so; the rest stay numpy."""
    import jax  # only when the kernel asks for placed params

    out: dict[str, Any] = {}
    for key, val in params.items():
        path = f"{prefix}{key}"
        if isinstance(val, Mapping):
            out[key] = _place(val, shardings, path + "/")
        elif path in shardings:
            arr = np.asarray(val)
            out[key] = jax.make_array_from_callback(arr.shape, shardings[path], lambda idx, a=arr: a[idx])
        else:
            out[key] = val
    return out


def build(cfg: NpzDirConfig, *, uri: str) -> NpzDirStore:
    return NpzDirStore(cfg, uri=uri)
