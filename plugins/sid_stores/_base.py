"""Shared machinery of the built-in checkpoint stores: names, payload encoding and the commit protocol.

A checkpoint ``<name>`` is two objects next to each other: the payload
``sft_state_<name>.msgpack`` (``flax.serialization.msgpack_serialize`` of a pure dict of numpy
arrays, byte-compatible with the reference port's files) and the record
``sft_state_<name>.meta.json`` (format tag, payload size, sha256 and md5, save time and the
caller's JSON metadata). Saving writes the payload first and the record last: the record is the
commit marker, so a checkpoint whose record is missing, or whose payload size differs from the
recorded one, is invisible to `names` and refused by `restore`. Overwriting a name first removes
the old record, so a crash mid-save never pairs an old record with a new payload (the checkpoint
is then simply absent); stores that can stage a payload (the local store writes a complete
temporary file first) remove the old record only once the new payload is fully written, so a
failed or interrupted write keeps the previous checkpoint. Concrete stores implement five
byte-level primitives.
"""

from __future__ import annotations

import abc
import base64
import datetime as _dt
import hashlib
import json
import re
from typing import Any, Mapping

from sidcore.api import CheckpointError
from sidcore.api import failpoint, msgpack_loads
from sidcore.api import NAME_RE

FORMAT = "sid-checkpoint/1"
PAYLOAD_PREFIX = "sft_state_"
PAYLOAD_SUFFIX = ".msgpack"
RECORD_SUFFIX = ".meta.json"
#: What to do about a checkpoint whose bytes do not match their record (appended to those errors).
DAMAGED_REMEDY = ("move the checkpoint (its .msgpack and .meta.json) out of the store to start over, or set "
                  "train.resume_fallback=true to resume from the newest intact checkpoint")


def check_name(name: str) -> str:
    """Return `name` if it is a valid checkpoint name (``last``, ``best``, ``step<N>``, snake_case)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise CheckpointError(
            f"invalid checkpoint name {name!r}: use last, best, step<N> or another snake_case name"
        )
    return name


def payload_file(name: str) -> str:
    return f"{PAYLOAD_PREFIX}{name}{PAYLOAD_SUFFIX}"


def record_file(name: str) -> str:
    return f"{PAYLOAD_PREFIX}{name}{RECORD_SUFFIX}"


def name_of_record(filename: str) -> str | None:
    """``sft_state_best.meta.json`` -> ``best`` (None for any other file name)."""
    if filename.startswith(PAYLOAD_PREFIX) and filename.endswith(RECORD_SUFFIX):
        name = filename[len(PAYLOAD_PREFIX):-len(RECORD_SUFFIX)]
        return name if NAME_RE.match(name) else None
    return None


def name_sort_key(name: str) -> tuple[int, int, str]:
    """Order: non-step names alphabetically, then ``step<N>`` by N."""
    m = re.fullmatch(r"step(\d+)", name)
    return (1, int(m.group(1)), name) if m else (0, 0, name)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5_b64(data: bytes) -> str:
    """MD5 in the base64 form GCS reports (``Blob.md5_hash``)."""
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def _to_numpy_tree(tree: Any) -> Any:
    """Copy the dict structure; turn array-likes that are not numpy (e.g. jax arrays) into numpy."""
    import numpy as np

    if isinstance(tree, Mapping):
        return {k: _to_numpy_tree(v) for k, v in tree.items()}
    if isinstance(tree, (np.ndarray, np.generic)) or not hasattr(tree, "__array__"):
        return tree
    return np.asarray(tree)


def place_params(params: Mapping[str, Any], shardings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Put the numpy params whose ``/``-joined key path is in `shardings` on devices, placed so
    (every process keeps only its own slices); other leaves stay as they are."""
    import jax
    import numpy as np

    out: dict[str, Any] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out[k] = place_params(v, shardings, f"{key}/")
        elif key in shardings:
            arr = np.asarray(v)
            out[k] = jax.make_array_from_callback(arr.shape, shardings[key], lambda idx, a=arr: a[idx])
        else:
            out[k] = v
    return out


def serialize_tree(tree: Mapping[str, Any], *, where: str) -> bytes:
    """msgpack bytes of a pure-dict tree (numpy arrays of any dtype incl. bfloat16, scalars, str)."""
    if not isinstance(tree, Mapping):
        raise CheckpointError(f"{where}: a checkpoint tree must be a dict, got {type(tree).__name__}")
    from flax import serialization

    try:
        return serialization.msgpack_serialize(_to_numpy_tree(tree))
    except (TypeError, ValueError, OverflowError) as exc:
        raise CheckpointError(f"{where}: cannot serialize the tree ({exc})") from None


def deserialize_tree(data: bytes, *, where: str) -> dict[str, Any]:
    """Inverse of `serialize_tree` (dict keys keep their type: str stays str, int stays int)."""
    return msgpack_loads(data, where=where)


def _json_default(obj: Any) -> Any:
    item = getattr(obj, "item", None)  # numpy scalars and 0-d arrays
    if callable(item) and getattr(obj, "shape", ()) == ():
        return item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def make_record(name: str, data: bytes, meta: Mapping[str, Any], *, where: str) -> bytes:
    """The JSON commit record of a payload."""
    if not isinstance(meta, Mapping):
        raise CheckpointError(f"{where}: checkpoint meta must be a dict, got {type(meta).__name__}")
    record = {
        "format": FORMAT,
        "name": name,
        "payload": payload_file(name),
        "size": len(data),
        "sha256": sha256_hex(data),
        "md5": md5_b64(data),
        "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "meta": dict(meta),
    }
    try:
        return (json.dumps(record, indent=2, sort_keys=True, default=_json_default) + "\n").encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: checkpoint meta is not JSON-serializable ({exc})") from None


def parse_record(raw: bytes, *, where: str) -> dict[str, Any]:
    """Parse and check a record; `CheckpointError` when it is not one."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{where}: unreadable checkpoint record ({exc})") from None
    if (
        not isinstance(record, dict)
        or record.get("format") != FORMAT
        or not isinstance(record.get("size"), int)
        or not isinstance(record.get("sha256"), str)
        or not isinstance(record.get("meta"), dict)
    ):
        raise CheckpointError(f"{where}: not a {FORMAT} checkpoint record")
    return record


class PayloadStore(abc.ABC):
    """A `sidcore.interfaces.CheckpointStore` over five byte-level primitives.

    Besides the protocol (`save`, `wait`, `restore`, `names`, `damaged`, `delete`) it offers raw-payload access used
    by `sid_stores.copy.copy_checkpoint`: `stat`, `read_payload`, `write_payload`, `checksum`.
    """

    uri: str
    sharded = False  # the kernel gathers the tree and calls save() on process 0 only

    # -- primitives ------------------------------------------------------------------------
    @abc.abstractmethod
    def _where(self, filename: str) -> str:
        """Human location of a file, for messages (path or ``gs://`` URL)."""

    @abc.abstractmethod
    def _put(self, filename: str, data: bytes) -> None:
        """Write a whole object atomically (readers see the old or the new content, never a mix)."""

    @abc.abstractmethod
    def _get(self, filename: str) -> bytes | None:
        """Read a whole object from storage (no cache); None if it does not exist."""

    @abc.abstractmethod
    def _remove(self, filename: str) -> None:
        """Delete an object; no error when it does not exist."""

    @abc.abstractmethod
    def _listing(self) -> dict[str, int]:
        """``{filename: size}`` of the ``sft_state_*`` objects of this store."""

    def _stage(self, filename: str, data: bytes) -> Any:
        """Prepare a payload write without touching the final name (default: nothing to do).

        Stores that can stage (a complete temporary file) keep the previous checkpoint committed
        while the slow write happens; `_publish` then swaps it in.
        """
        del filename
        return data

    def _publish(self, filename: str, staged: Any) -> None:
        """Move a staged payload to its final name (default: the whole atomic `_put`)."""
        self._put(filename, staged)

    def _discard(self, staged: Any) -> None:
        """Drop a staged payload after a failure."""
        del staged

    def _fetch_payload(self, name: str, record: Mapping[str, Any]) -> bytes | None:
        """Payload bytes for `restore` (stores may serve them from a verified cache)."""
        del record
        return self._get(payload_file(name))

    # -- protocol --------------------------------------------------------------------------
    def save(self, name: str, tree: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        """Serialize `tree` and commit it with `meta` under `name` (payload first, record last)."""
        check_name(name)
        self.write_payload(name, serialize_tree(tree, where=self._where(payload_file(name))), meta)

    def wait(self) -> None:
        """Nothing to wait for: `save` returns once the checkpoint is committed."""

    def restore(self, name: str, *, params_only: bool = False,
                shardings: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(tree, meta)`` of a committed checkpoint, verified against its sha256.

        ``params_only`` keeps only ``tree["params"]`` (the whole payload is still read: it is one
        blob); ``shardings`` (``{param key "a/b/c": Sharding}``) places those params as `jax.Array` s.
        """
        data, meta = self.read_payload(name)
        tree = deserialize_tree(data, where=self._where(payload_file(name)))
        if params_only:
            tree = {k: v for k, v in tree.items() if k == "params"}
        if shardings and isinstance(tree.get("params"), Mapping):
            tree["params"] = place_params(tree["params"], shardings)
        return tree, meta

    def names(self) -> list[str]:
        """Committed, intact checkpoint names (record readable, payload size as recorded), sorted."""
        return sorted(self._scan()[0], key=name_sort_key)

    def damaged(self) -> dict[str, str]:
        """Checkpoints whose commit record exists but that cannot be restored: ``{name: reason}``
        (record unreadable, payload missing, or payload size differs from the record)."""
        return self._scan()[1]

    def _scan(self) -> tuple[list[str], dict[str, str]]:
        listing = self._listing()
        good: list[str] = []
        bad: dict[str, str] = {}
        for filename in listing:
            name = name_of_record(filename)
            if name is None:
                continue
            payload = payload_file(name)
            raw = self._get(filename)
            try:
                record = parse_record(raw, where=self._where(filename)) if raw is not None else None
            except CheckpointError as exc:
                bad[name] = str(exc)
                continue
            if record is None:
                continue  # deleted while we listed
            if payload not in listing:
                bad[name] = f"{self._where(payload)}: payload missing (its record {self._where(filename)} exists)"
            elif record["size"] != listing[payload]:
                bad[name] = (f"{self._where(payload)}: {listing[payload]} bytes but its record says "
                             f"{record['size']} (truncated or overwritten)")
            else:
                good.append(name)
        return good, bad

    def delete(self, name: str) -> None:
        """Remove a checkpoint (record first, so it disappears atomically); missing names are fine."""
        check_name(name)
        self._remove(record_file(name))
        self._remove(payload_file(name))

    # -- raw payload access ----------------------------------------------------------------
    def stat(self, name: str) -> dict[str, Any]:
        """The commit record of `name` (``size``, ``sha256``, ``md5``, ``saved_at``, ``meta``)."""
        check_name(name)
        raw = self._get(record_file(name))
        if raw is None:
            hint = ""
            if payload_file(name) in self._listing():
                hint = (" (payload without its record: an interrupted save, or a reference-port file; "
                        "read the latter with sid_stores.msgpack_store.read_msgpack_file)")
            raise CheckpointError(f"{self._where(record_file(name))}: checkpoint '{name}' not found{hint}")
        return parse_record(raw, where=self._where(record_file(name)))

    def write_payload(self, name: str, data: bytes, meta: Mapping[str, Any]) -> None:
        """Commit already-serialized payload bytes under `name`."""
        check_name(name)
        record = make_record(name, data, meta, where=self._where(record_file(name)))
        staged = self._stage(payload_file(name), data)
        try:
            failpoint("store.staged")
            self._remove(record_file(name))  # un-commit the previous version first
            failpoint("store.uncommitted")
            self._publish(payload_file(name), staged)
        except BaseException:
            self._discard(staged)
            raise
        failpoint("store.published")
        self._put(record_file(name), record)  # commit marker, last

    def read_payload(self, name: str) -> tuple[bytes, dict[str, Any]]:
        """Verified payload bytes and the caller's meta of `name`."""
        record = self.stat(name)
        where = self._where(payload_file(name))
        data = self._fetch_payload(name, record)
        if data is None:
            raise CheckpointError(f"{where}: payload of checkpoint '{name}' is missing")
        self._verify(data, record, where=where)
        return data, dict(record["meta"])

    def checksum(self, name: str) -> str:
        """sha256 of the payload bytes as stored now (re-read, bypassing any cache), verified
        against the record."""
        record = self.stat(name)
        where = self._where(payload_file(name))
        data = self._get(payload_file(name))
        if data is None:
            raise CheckpointError(f"{where}: payload of checkpoint '{name}' is missing")
        return self._verify(data, record, where=where)

    @staticmethod
    def _verify(data: bytes, record: Mapping[str, Any], *, where: str) -> str:
        if len(data) != record["size"]:
            raise CheckpointError(
                f"{where}: payload has {len(data)} bytes, record says {record['size']} "
                f"(truncated or replaced); {DAMAGED_REMEDY}"
            )
        digest = sha256_hex(data)
        if digest != record["sha256"]:
            raise CheckpointError(f"{where}: sha256 mismatch (corrupt payload); {DAMAGED_REMEDY}")
        return digest

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"
