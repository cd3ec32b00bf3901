"""Copy one checkpoint between two stores and prove the copy (behind ``sid checkpoint copy SRC DST``).

Built-in stores (and any store with the raw-payload methods ``read_payload``, ``write_payload``
and ``checksum``) copy the verified payload bytes unchanged, then re-read the destination from
storage and compare its sha256 with the source's. Other `CheckpointStore` s (e.g. `orbax`,
and any conversion between formats) go through ``restore`` / ``save`` / ``wait`` / ``restore`` and
compare a digest of the msgpack-serialized trees instead (the trees must be equal bitwise).
"""

from __future__ import annotations

import logging
from typing import Any

from sidcore.api import CheckpointError
from sidcore.api import CheckpointStore
from sid_stores._base import serialize_tree, sha256_hex

log = logging.getLogger(__name__)

__all__ = ["copy_checkpoint"]

_RAW = ("read_payload", "write_payload", "checksum")


def _raw(store: Any) -> bool:
    return all(callable(getattr(store, m, None)) for m in _RAW)


def copy_checkpoint(
    src: CheckpointStore, dst: CheckpointStore, name: str, *, dst_name: str | None = None
) -> str:
    """Copy checkpoint `name` from `src` to `dst` (as `dst_name`, default the same name).

    Args:
        src: the store holding the checkpoint.
        dst: the target store (an existing checkpoint of that name is replaced).
        name: checkpoint name (``last``, ``best``, ``step<N>``, ...).
        dst_name: name in `dst`.

    Returns:
        The sha256 (hex) of the copied payload.

    Raises:
        CheckpointError: the source is missing or corrupt, or the copy does not verify.
    """
    target = dst_name or name
    where = f"copy {src.uri} [{name}] -> {dst.uri} [{target}]"
    if _raw(src) and _raw(dst):
        data, meta = src.read_payload(name)  # verified against the source record
        expected = sha256_hex(data)
        dst.write_payload(target, data, meta)
        actual = dst.checksum(target)  # re-read from storage, verified against the new record
    else:
        tree, meta = src.restore(name)
        expected = sha256_hex(serialize_tree(tree, where=where))
        dst.save(target, tree, meta)
        getattr(dst, "wait", lambda: None)()  # asynchronous stores (orbax) commit here
        tree2, _ = dst.restore(target)
        actual = sha256_hex(serialize_tree(tree2, where=where))
    if actual != expected:
        raise CheckpointError(f"{where}: sha256 differs after copy ({expected[:12]}... vs {actual[:12]}...)")
    log.info("%s: ok (sha256 %s)", where, expected)
    return expected
