"""The `msgpack` store: checkpoints as local files ``<dir>/sft_state_<name>.msgpack`` + ``.meta.json``.

The payload file is exactly what the reference port wrote (``flax.serialization`` msgpack of a
pure dict), so reference tools can read it; the ``.meta.json`` record next to it is the commit
marker (see `sid_stores._base`). Every file is written atomically: a hidden temporary file in the
same directory, flushed and fsynced, then ``os.replace`` d over the final name, then the directory
is fsynced. The payload is staged completely before the previous record is removed, so a failed
or killed save leaves the previous checkpoint of that name intact. `read_msgpack_file` reads a bare
reference-port file (no record) explicitly.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from sidcore.errors import CheckpointError
from sid_stores._base import PAYLOAD_PREFIX, PayloadStore, deserialize_tree
from sid_stores.config import MsgpackConfig

__all__ = ["MsgpackStore", "atomic_write", "build", "read_msgpack_file"]


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_temp(path: Path, data: bytes, *, fsync: bool) -> Path:
    """Write `data` to a hidden temporary file next to `path`; return the temporary path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    except BaseException as exc:
        _unlink_quietly(Path(tmp))
        if isinstance(exc, OSError):
            raise CheckpointError(f"{path}: cannot write ({exc.strerror or exc})") from None
        raise
    return Path(tmp)


def _replace(tmp: Path, path: Path, *, fsync: bool) -> None:
    """``os.replace`` a finished temporary file over `path` (then fsync the directory)."""
    try:
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise CheckpointError(f"{path}: cannot write ({exc.strerror or exc})") from None
    if fsync:
        _fsync_dir(path.parent)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write `data` to `path` atomically (temp file in the same directory + ``os.replace``).

    Raises:
        CheckpointError: the directory cannot be created or written.
    """
    path = Path(path)
    _replace(_write_temp(path, data, fsync=fsync), path, fsync=fsync)


class MsgpackStore(PayloadStore):
    """Checkpoints in one local directory (created on the first save)."""

    def __init__(self, uri: str | os.PathLike[str], cfg: MsgpackConfig | None = None) -> None:
        text = os.fspath(uri)
        self.uri = text
        self.root = Path(text[len("file://"):] if text.startswith("file://") else text).expanduser()
        self.cfg = cfg or MsgpackConfig()

    def path(self, filename: str) -> Path:
        return self.root / filename

    def _where(self, filename: str) -> str:
        return str(self.root / filename)

    def _put(self, filename: str, data: bytes) -> None:
        atomic_write(self.root / filename, data, fsync=self.cfg.fsync)

    def _stage(self, filename: str, data: bytes) -> Path:
        return _write_temp(self.root / filename, data, fsync=self.cfg.fsync)

    def _publish(self, filename: str, staged: Path) -> None:
        _replace(staged, self.root / filename, fsync=self.cfg.fsync)

    def _discard(self, staged: Path) -> None:
        _unlink_quietly(staged)

    def _get(self, filename: str) -> bytes | None:
        try:
            return (self.root / filename).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"{self.root / filename}: cannot read ({exc.strerror or exc})") from None

    def _remove(self, filename: str) -> None:
        try:
            (self.root / filename).unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CheckpointError(f"{self.root / filename}: cannot delete ({exc.strerror or exc})") from None
        if self.cfg.fsync:
            _fsync_dir(self.root)

    def _listing(self) -> dict[str, int]:
        try:
            entries = list(os.scandir(self.root))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        out = {}
        for entry in entries:
            if entry.name.startswith(PAYLOAD_PREFIX) and entry.is_file():
                out[entry.name] = entry.stat().st_size
        return out


def read_msgpack_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read any msgpack checkpoint file directly, without a record (reference-port files).

    The reference port's payload is ``{"step": int, "params": {...}}``; this returns whatever
    dict the file holds. No checksum can be verified without a record.

    Raises:
        CheckpointError: missing, unreadable or not a msgpack dict.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return deserialize_tree(data, where=str(path))


def build(cfg: MsgpackConfig, *, uri: str) -> MsgpackStore:
    """Factory of the `msgpack` store; `uri` is a local directory (``file://`` prefix allowed)."""
    if not uri or str(uri).startswith("gs://"):
        raise CheckpointError(
            f"store 'msgpack' needs a local directory, got {uri!r} (use store 'gcs' for gs://)"
        )
    return MsgpackStore(uri, cfg)
