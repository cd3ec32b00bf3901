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
from pathlib import Path

from sidcore.api import fsync_dir, publish_file, unlink_quietly, write_temp
from sidcore.api import atomic_write as _atomic_write
from sidcore.api import CheckpointError
from sidcore.api import read_msgpack_file
from sidcore.api import uri_scheme
from sid_stores._base import PAYLOAD_PREFIX, PayloadStore
from sid_stores.config import MsgpackConfig

__all__ = ["MsgpackStore", "atomic_write", "build", "read_msgpack_file"]


def _write_temp(path: Path, data: bytes, *, fsync: bool) -> Path:
    return write_temp(path, data, fsync=fsync, error=CheckpointError)


def _replace(tmp: Path, path: Path, *, fsync: bool) -> None:
    publish_file(tmp, path, fsync=fsync, error=CheckpointError)


def atomic_write(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write `data` to `path` atomically (`sidcore.files.atomic_write` with `CheckpointError`)."""
    _atomic_write(path, data, fsync=fsync, error=CheckpointError)


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
        unlink_quietly(staged)

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
            fsync_dir(self.root)

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


def build(cfg: MsgpackConfig, *, uri: str) -> MsgpackStore:
    """Factory of the `msgpack` store; `uri` is a local directory (``file://`` prefix allowed)."""
    scheme = uri_scheme(str(uri)) if uri else ""
    if scheme != "file":
        hint = " (use store 'gcs' for gs://)" if scheme == "gs" else ""
        raise CheckpointError(f"store 'msgpack' needs a local directory, got {uri!r}{hint}")
    return MsgpackStore(uri, cfg)
