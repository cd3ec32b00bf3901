"""A baseline checkpoint: ``baseline.msgpack`` (the flat upstream-named weights, flax msgpack) and
``baseline.json`` (format tag, options, ``item_num``, the SID of each item, payload sha256, metrics).

Both files are written atomically (temporary file + rename), the JSON last: it is the commit
marker, so a folder without it (or whose payload hash differs) holds no checkpoint. The weights are
upstream's ``state_dict`` as numpy arrays (same names and layouts), so an upstream ``.pth`` converts
by ``{k: v.numpy()}``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sidcore.errors import CheckpointError
from sidcore.files import atomic_write, msgpack_loads

__all__ = ["FORMAT", "PAYLOAD", "RECORD", "load_checkpoint", "read_record", "save_checkpoint"]

FORMAT = "sid-baseline/1"
PAYLOAD = "baseline.msgpack"
RECORD = "baseline.json"


def save_checkpoint(out_dir: str | Path, flat: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write ``flat`` (name -> numpy array) and ``meta`` into ``out_dir``; returns the record path."""
    from flax import serialization

    out = Path(out_dir)
    payload = serialization.msgpack_serialize({k: flat[k] for k in sorted(flat)})
    atomic_write(out / PAYLOAD, payload, error=CheckpointError)
    record = {"format": FORMAT, "payload": PAYLOAD, "sha256": hashlib.sha256(payload).hexdigest(), **meta}
    atomic_write(out / RECORD, json.dumps(record, indent=1) + "\n", error=CheckpointError)
    return out / RECORD


def _record_path(path: str | Path) -> Path:
    p = Path(path)
    return p / RECORD if p.is_dir() else p


def read_record(path: str | Path) -> dict[str, Any]:
    """The JSON record of a checkpoint folder (or of its ``baseline.json``)."""
    rec = _record_path(path)
    if not rec.is_file():
        raise CheckpointError(f"{rec}: no baseline checkpoint (train one with `sid baseline sasrec --out DIR`)")
    try:
        meta = json.loads(rec.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{rec}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{rec}: not a {FORMAT} record")
    for key in ("model", "options", "item_num", "item_sids", "sha256"):
        if key not in meta:
            raise CheckpointError(f"{rec} [{key}]: missing")
    if len(meta["item_sids"]) != meta["item_num"]:
        raise CheckpointError(f"{rec} [item_sids]: {len(meta['item_sids'])} entries for item_num {meta['item_num']}")
    return meta


def load_checkpoint(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """``(model, record)``: the model rebuilt from the record's options with the saved weights."""
    import numpy as np

    from sidcore.baselines.models import build_model, load_flat_params

    meta = read_record(path)
    rec = _record_path(path)
    payload_path = rec.parent / meta.get("payload", PAYLOAD)
    try:
        data = payload_path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{payload_path}: cannot read ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise CheckpointError(f"{payload_path}: sha256 differs from {rec.name}'s (damaged or replaced)")
    flat = {k: np.asarray(v) for k, v in msgpack_loads(data, where=str(payload_path)).items()}
    o = meta["options"]
    model = build_model(meta["model"], item_num=int(meta["item_num"]), seq_len=int(o["seq_len"]),
                        hidden=int(o["hidden_factor"]), dropout_rate=float(o["dropout_rate"]), seed=0,
                        num_heads=int(o.get("num_heads", 1)), num_filters=int(o.get("num_filters", 16)),
                        filter_sizes=tuple(o.get("filter_sizes", (2, 3, 4))))
    try:
        load_flat_params(model, flat)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{payload_path}: does not fit a {meta['model']} model ({exc})") from None
    return model, meta
