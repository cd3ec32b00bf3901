"""``sid index build`` as a function: embeddings -> quantizer -> collisions -> index -> data layout.

Steps (`build_index`):

1. Read ``E.npy`` (``[N, D]`` float, row ``i`` = item id ``i``, upstream's item-id order) and the
   item ids of the category (keys of the source index.json, else of item.json; they must be
   ``0 .. N-1``), or, from an upstream ``.inter`` folder (``inter_dir``), the integer keys of
   ``NAME.item.json`` in ascending order (row ``r`` = the ``r``-th id, as upstream ``text2emb``).
2. ``quantizer.fit(E, seed=seed)``; take its ``fit_codes``.
3. Optional Sinkhorn re-assignment of the last level of colliding items (`sid_quantizers.collisions`).
4. Codes -> tokens ``<a_..><b_..>...`` (`sidcore.data.sid_index.codes_to_index`, ``code_offset``), then
   the optional dedup level (``variable`` / ``fixed``).
5. `sid_quantizers.layout.write_layout` into ``out`` (from an ``.inter`` folder: only
   ``out/NAME.index.json``, the file ``sid data convert`` reads), plus ``<C>.build.json`` (the resolved
   options and the statistics before and after collision handling) and the fitted quantizer in
   ``<C>.quantizer/`` beside the index (`sid_quantizers.artefact`; ``sid index assign`` reads it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import attrs
import numpy as np

from sidcore.api import parse_override, structure
from sidcore.api import read_index, read_items, split_paths
from sidcore.api import DEDUP_MODES, codes_to_index, dedup_index, index_stats
from sidcore.api import ConfigError, UsageError, file_error

log = logging.getLogger(__name__)

__all__ = ["build_index", "inter_item_ids", "item_ids", "load_embeddings", "resolve_quantizer"]


def load_embeddings(path: str | Path) -> np.ndarray:
    """``[N, D]`` float32 from a ``.npy`` file, or a `DataError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "file not found")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic != b"\x93NUMPY":  # numpy would try it as a pickle and suggest loading it unsafely
        raise file_error(path, "not a .npy file (no NumPy header); write the embeddings with numpy.save "
                         "(sid index embed does)")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        why = "holds Python objects, which sid does not unpickle" if "pickle" in str(exc) else str(exc)
        raise file_error(path, f"not a numeric .npy array ({why})") from None
    except OSError as exc:
        raise file_error(path, f"unreadable .npy file ({exc})") from None
    if arr.ndim != 2 or arr.shape[0] == 0 or not np.issubdtype(arr.dtype, np.number):
        raise file_error(path, f"expected a numeric [items, dim] array, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise file_error(path, f"{int((~np.isfinite(arr)).any(1).sum())} rows hold NaN or inf")
    return arr


def item_ids(data_dir: str | Path, category: str) -> list[str]:
    """Item ids ``"0" .. "N-1"`` of the category (source index.json keys, else item.json keys)."""
    paths = split_paths(data_dir, category)
    if paths["index"].is_file():
        src, keys = paths["index"], list(read_index(paths["index"]))
    elif paths["items"].is_file():
        src, keys = paths["items"], list(read_items(paths["items"]))
    else:
        raise file_error(paths["index"], f"no index.json or item.json for category {category!r}")
    ints = sorted(int(k) for k in keys if k.isdigit())
    if len(ints) != len(keys) or ints != list(range(len(keys))):
        raise file_error(src, "item ids must be the integers 0 .. N-1 (embedding rows are in item-id order)")
    return [str(i) for i in ints]


def resolve_quantizer(registry: Any, name: str, overrides: Sequence[str]) -> tuple[Any, Any]:
    """(component spec, structured options) from ``KEY=VALUE`` (``quantizer.`` prefix optional)."""
    spec = registry.get("quantizer", name)
    options: dict[str, Any] = {}
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] == "quantizer":
            keys = keys[1:]
        if len(keys) != 1:
            raise ConfigError(f"override {text!r}: expected KEY=VALUE with a {name} option as KEY")
        options[keys[0]] = value
    return spec, structure(spec.config, options, f"quantizer[{name}]")


def _stats(index) -> dict[str, Any]:
    return index_stats(index).to_dict()


def inter_item_ids(inter_dir: str | Path, dataset: str) -> list[str]:
    """Item ids of an upstream ``.inter`` folder: the keys of ``DIR/NAME.item.json``, which must be
    integers, in ascending order (the row order of upstream ``text2emb``'s ``.npy``)."""
    path = Path(inter_dir) / f"{dataset}.item.json"
    if not path.is_file():
        raise file_error(path, "file not found (an .inter folder holds NAME.item.json, e.g. from "
                               "sid data amazon18)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise file_error(path, f"unreadable JSON ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise file_error(path, "expected a non-empty JSON object keyed by item id")
    bad = [k for k in data if not k.isdigit()]
    if bad:
        raise file_error(path, "item ids must be integers", key=bad[0])
    return [str(i) for i in sorted(int(k) for k in data)]


def build_index(
    *,
    embeddings: str | Path | np.ndarray,
    data_dir: str | Path | None = None,
    category: str | None = None,
    out: str | Path,
    inter_dir: str | Path | None = None,
    dataset: str | None = None,
    force: bool = False,
    quantizer: Any,
    quantizer_name: str = "",
    options: Any = None,
    seed: int = 2024,
    sinkhorn_rounds: int = 0,
    sinkhorn_eps: float = 0.003,
    sinkhorn_iterations: int = 50,
    dedup: str = "none",
    code_offset: int = 0,
    embedding_model: str = "",
) -> dict[str, Any]:
    """Run the whole pipeline (module docstring); returns the report also written to ``build.json``."""
    if dedup not in DEDUP_MODES:
        raise ConfigError(f"--dedup must be one of {', '.join(DEDUP_MODES)}, got {dedup!r}")
    options = options if options is not None else getattr(quantizer, "cfg", None)
    x = embeddings if isinstance(embeddings, np.ndarray) else load_embeddings(embeddings)
    if inter_dir is not None:
        name = dataset or Path(inter_dir).resolve().name
        ids = inter_item_ids(inter_dir, name)
        index_path = Path(out) / f"{name}.index.json"
        if index_path.exists() and not force:
            raise UsageError(f"{index_path} exists; pass --force to replace it")
    else:
        if data_dir is None or category is None:
            raise UsageError("give --data-dir DIR --category C (a MiniOneRec layout) or --inter-dir DIR/NAME")
        name = category
        ids = item_ids(data_dir, category)
    if x.shape[0] != len(ids):
        where = embeddings if not isinstance(embeddings, np.ndarray) else "embeddings"
        what = f"category {name}" if inter_dir is None else f"{name}.item.json"
        raise file_error(where, f"{x.shape[0]} rows but {what} has {len(ids)} items")
    log.info("fitting %s on %s embeddings", quantizer_name or "quantizer", x.shape)
    fitted = quantizer.fit(x, seed=seed)
    codes = np.asarray(fitted.fit_codes, np.int32)
    raw = codes_to_index(codes, item_ids=ids, offset=code_offset)
    rounds = 0
    if sinkhorn_rounds > 0:
        from sid_quantizers.collisions import sinkhorn_dedup

        codes, rounds = sinkhorn_dedup(fitted, x, codes, rounds=sinkhorn_rounds, eps=sinkhorn_eps,
                                       iterations=sinkhorn_iterations)
    index = dedup_index(codes_to_index(codes, item_ids=ids, offset=code_offset), dedup)
    if inter_dir is not None:
        from sidcore.api import write_index

        written = {"index": write_index(index_path, index)}
    else:
        from sid_quantizers.layout import write_layout

        written = write_layout(data_dir, category, index, out)
    report = {
        "quantizer": quantizer_name,
        "options": attrs.asdict(options) if options is not None and attrs.has(type(options)) else {},
        "seed": seed,
        "embeddings": list(x.shape),
        "sinkhorn": {"rounds_max": sinkhorn_rounds, "rounds_run": rounds, "eps": sinkhorn_eps,
                     "iterations": sinkhorn_iterations},
        "dedup": dedup,
        "code_offset": code_offset,
        "stats_quantizer": _stats(raw),
        "stats": _stats(index),
        "files": {k: str(v) for k, v in written.items()},
    }
    from sid_quantizers.artefact import artefact_kind, save_quantizer

    settings = {"sinkhorn_rounds": sinkhorn_rounds, "sinkhorn_eps": sinkhorn_eps,
                "sinkhorn_iterations": sinkhorn_iterations, "dedup": dedup, "code_offset": code_offset}
    if artefact_kind(fitted) is None:
        log.warning("%s has no artefact format: the fitted quantizer is not saved (no sid index assign)",
                    quantizer_name or type(fitted).__name__)
    else:
        qdir = save_quantizer(Path(written["index"]).with_name(f"{name}.quantizer"), fitted,
                              quantizer=quantizer_name, options=report["options"], dim=x.shape[1],
                              embedding_model=embedding_model, settings=settings,
                              index_file=Path(written["index"]).name)
        report["files"]["quantizer"] = str(qdir)
    report["embedding_model"] = embedding_model
    build_json = Path(written["index"]).with_name(f"{name}.build.json")
    build_json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    report["files"]["build"] = str(build_json)
    return report
