"""File primitives every part of `sid` shares: atomic writes and reading msgpack dict files.

`atomic_write` puts bytes or text in a hidden temporary file beside the target, flushes (and by
default fsyncs) it, ``os.replace`` s it over the final name and fsyncs the directory, so a reader
sees the old content or the new, never a mix, and a killed writer leaves only a ``.tmp`` file
(`clean_temp_files` removes those). Errors are one-line `SidError` s naming the path (stores pass
``error=CheckpointError``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from sidcore.errors import CheckpointError, SidError

TEMP_SUFFIX = ".tmp"


def fsync_dir(directory: Path) -> None:
    """fsync a directory (so a rename in it is durable); silently skipped where unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_temp(path: Path, data: bytes, *, fsync: bool = True, error: type[SidError] = SidError) -> Path:
    """Write `data` to a hidden temporary file next to `path`; return the temporary path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise error(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    except BaseException as exc:
        unlink_quietly(Path(tmp))
        if isinstance(exc, OSError):
            raise error(f"{path}: cannot write ({exc.strerror or exc})") from None
        raise
    return Path(tmp)


def publish(tmp: Path, path: Path, *, fsync: bool = True, error: type[SidError] = SidError) -> None:
    """``os.replace`` a finished temporary file over `path` (then fsync the directory)."""
    try:
        os.replace(tmp, path)
    except OSError as exc:
        unlink_quietly(tmp)
        raise error(f"{path}: cannot write ({exc.strerror or exc})") from None
    if fsync:
        fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, fsync: bool = True,
                 error: type[SidError] = SidError) -> None:
    """Write `data` (bytes, or text as UTF-8) to `path` atomically."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    publish(write_temp(path, raw, fsync=fsync, error=error), path, fsync=fsync, error=error)


def clean_temp_files(directory: str | os.PathLike[str], prefix: str = ".") -> list[Path]:
    """Remove the hidden ``.<name>.<random>.tmp`` files a killed writer left in `directory`."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(prefix) and entry.name.endswith(TEMP_SUFFIX) and entry.is_file():
            unlink_quietly(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


def msgpack_loads(data: bytes, *, where: str) -> dict[str, Any]:
    """A msgpack (flax.serialization) payload that must be a dict; `CheckpointError` otherwise."""
    from flax import serialization

    try:
        tree = serialization.msgpack_restore(data)
    except Exception as exc:  # noqa: BLE001 - msgpack raises many unrelated types on garbage
        cause = f"{type(exc).__name__}: {exc}"
        raise CheckpointError(f"{where}: not a readable msgpack checkpoint ({cause})") from None
    if not isinstance(tree, dict):
        raise CheckpointError(f"{where}: payload is a {type(tree).__name__}, expected a dict")
    return tree


def read_msgpack_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read any msgpack checkpoint file directly, without a record (e.g. the reference port's
    ``{"step", "params"}`` files). No checksum can be verified without a record.

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
    return msgpack_loads(data, where=str(path))


_FAILPOINT_HITS: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Fault injection for the crash tests: with ``SID_FAILPOINT=<name>[:<n>[:<SIGNAL>]]`` in the
    environment the process sends itself SIGNAL (default SIGKILL) at the n-th time (default 1st) it
    passes the point `name`. Points: ``store.staged`` (new payload fully written, old checkpoint still
    committed), ``store.uncommitted`` (old record removed), ``store.published`` (new payload in place,
    record not yet written), ``job.startup`` (config resolved, nothing loaded or written),
    ``eval.batch`` (after each decoded eval batch). No effect without the variable (one dict lookup)."""
    spec = os.environ.get("SID_FAILPOINT")
    if not spec:
        return
    want, _, rest = spec.partition(":")
    if want != name:
        return
    count, _, signame = rest.partition(":")
    _FAILPOINT_HITS[name] = _FAILPOINT_HITS.get(name, 0) + 1
    if _FAILPOINT_HITS[name] >= int(count or 1):
        import signal

        os.kill(os.getpid(), getattr(signal, signame or "SIGKILL"))
