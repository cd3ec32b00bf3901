"""A fitted quantizer on disk: ``sid index build`` writes it, ``sid index assign`` reads it.

Folder layout (``OUT/index/<C>.quantizer/``, beside ``<C>.index.json``)::

    quantizer.json    format, version, quantizer name and resolved options, the embedding model
                      name and dim, item count, codebook sizes, the build's collision settings
                      (sinkhorn rounds/eps/iterations, dedup, code offset) and the index file name;
                      written last: a folder without it is not a quantizer
    codes.npy         [N, L] int32: the quantizer's codes of the build's items, before collision
                      handling (upstream ``{ds}.codes_constrained.npy``)
    codebooks.npz     k-means quantizers: ``codebook_0 .. codebook_{L-1}`` [K_l, D] float32, the
                      keys of upstream's ``{ds}.codebooks_constrained.npz`` (either file can
                      warm-start ``rq_kmeans_plus``)
    params.msgpack    RQ-VAE quantizers: the flax NNX parameters as a pure dict (msgpack)

No pickle anywhere. The folder is written under a temporary name in the same parent and renamed
into place; an existing one is replaced only after the new one is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import attrs
import numpy as np

from sidcore.api import ConfigError, file_error

__all__ = ["FORMAT", "LoadedQuantizer", "artefact_kind", "load_quantizer", "save_quantizer"]

FORMAT = "sid-quantizer"
VERSION = 1
META = "quantizer.json"


def artefact_kind(fitted: Any) -> str | None:
    """``"codebooks"``, ``"rqvae"``, or None for a fitted quantizer with no artefact format (a
    third-party one: `sid index build` then saves none and says so)."""
    from sid_quantizers.kmeans import ResidualKMeans

    if isinstance(fitted, ResidualKMeans):
        return "codebooks"
    from sid_quantizers.rqvae import FittedRqvae

    if isinstance(fitted, FittedRqvae):
        return "rqvae"
    return None


def save_quantizer(path: str | Path, fitted: Any, *, quantizer: str, options: Mapping[str, Any],
                   dim: int, embedding_model: str = "", settings: Mapping[str, Any] | None = None,
                   index_file: str = "") -> Path:
    """Write ``fitted`` (module docstring) to the folder ``path`` atomically; returns ``path``."""
    path = Path(path)
    kind = artefact_kind(fitted)
    if kind is None:
        raise ConfigError(f"cannot save a fitted {type(fitted).__name__}: only k-means codebooks and RQ-VAE "
                          "weights have an artefact format")
    codes = np.asarray(fitted.fit_codes, np.int32)
    meta = {
        "format": FORMAT, "version": VERSION, "kind": kind, "quantizer": quantizer,
        "options": dict(options), "embedding": {"model": embedding_model, "dim": int(dim)},
        "items": int(codes.shape[0]), "codebook_sizes": list(fitted.codebook_sizes),
        "collisions": dict(settings or {}), "index": index_file,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        np.save(tmp / "codes.npy", codes)
        if kind == "codebooks":
            np.savez(tmp / "codebooks.npz", **{f"codebook_{i}": np.asarray(c, np.float32)
                                               for i, c in enumerate(fitted.codebooks)})
        else:
            from flax import nnx, serialization
            import jax

            meta["model"] = {"in_dim": int(dim), "residual": bool(getattr(fitted, "residual", False))}
            pure = jax.tree.map(np.asarray, nnx.to_pure_dict(fitted.state))
            (tmp / "params.msgpack").write_bytes(serialization.msgpack_serialize(pure))
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


@attrs.frozen(kw_only=True, eq=False)
class LoadedQuantizer:
    """A quantizer read back: ``fitted`` (encode/decode/distances) and its ``quantizer.json``."""

    path: Path
    fitted: Any
    meta: dict[str, Any]

    @property
    def dim(self) -> int:
        return int(self.meta["embedding"]["dim"])

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.meta.get("collisions") or {})

    @property
    def index_path(self) -> Path | None:
        name = self.meta.get("index") or ""
        return self.path.parent / name if name else None


def _config(name: str, options: Mapping[str, Any], where: Path) -> Any:
    from sidcore.api import structure
    from sidcore.api import load_plugins

    spec = load_plugins().registry.get("quantizer", name)
    return structure(spec.config, dict(options), f"{where}: options")


def load_quantizer(path: str | Path) -> LoadedQuantizer:
    """Read a folder written by `save_quantizer`; a `DataError` names the file that is wrong."""
    path = Path(path)
    meta_path = path / META
    if not meta_path.is_file():
        raise file_error(path, f"not a quantizer folder (no {META}; `sid index build` writes "
                               "OUT/index/<C>.quantizer/)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise file_error(meta_path, f"unreadable JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise file_error(meta_path, f"expected \"format\": \"{FORMAT}\"")
    if meta.get("version") != VERSION:
        raise file_error(meta_path, f"version {meta.get('version')!r} is not supported (this sid reads "
                                    f"{VERSION})", key="version")
    kind = meta.get("kind")
    codes = np.load(path / "codes.npy", allow_pickle=False) if (path / "codes.npy").is_file() else None
    if codes is None:
        raise file_error(path / "codes.npy", "file not found")
    if kind == "codebooks":
        from sid_quantizers.kmeans import ResidualKMeans

        books_path = path / "codebooks.npz"
        if not books_path.is_file():
            raise file_error(books_path, "file not found")
        with np.load(books_path, allow_pickle=False) as z:
            books = tuple(np.asarray(z[f"codebook_{i}"], np.float32) for i in range(len(z.files)))
        fitted = ResidualKMeans(codebooks=books, fit_codes=codes)
    elif kind == "rqvae":
        from sid_quantizers.rqvae import restore_rqvae

        params = path / "params.msgpack"
        if not params.is_file():
            raise file_error(params, "file not found")
        cfg = _config(meta["quantizer"], meta.get("options") or {}, meta_path)
        model = meta.get("model") or {}
        in_dim = int(model.get("in_dim", meta["embedding"]["dim"]))
        fitted = restore_rqvae(cfg, params.read_bytes(), in_dim=in_dim,
                               residual=bool(model.get("residual", False)), fit_codes=codes)
    else:
        raise file_error(meta_path, f"unknown kind {kind!r} (expected codebooks or rqvae)", key="kind")
    return LoadedQuantizer(path=path, fitted=fitted, meta=meta)
