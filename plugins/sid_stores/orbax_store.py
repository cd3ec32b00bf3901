"""The `orbax` store: sharded, asynchronous checkpoints with an atomic commit record.

Layout of a store directory (local path, ``file://`` or ``gs://bucket/prefix``)::

    orbax_<name>.json            commit record: format, the Orbax folder it points to, the tree
                                 layout (`sid_stores._orbax_layout`), save time, the caller's meta
    orbax_<name>.<token>/        one Orbax checkpoint (items ``params`` and ``state``), written by
                                 every process: each writes only the shards it owns

`sharded` is True: the kernel calls `save` on every process with the device arrays (no gather).
A save goes to a *fresh* folder (the token is unique per save and agreed by all processes); once
Orbax has finalised it (every process done, folder renamed into place or its commit file written),
process 0 atomically replaces the small commit record and then deletes the folder the old record
pointed to. A crash at any moment therefore leaves the previous checkpoint of that name committed
and readable; folders no record points to (killed saves, superseded folders a crash left) are
removed by the first save of a store instance (process 0; folders that another instance of the
same process is writing are spared). `is_orbax_dir` recognises a store directory.

With ``async_save`` (default) `save` returns once the arrays are copied to host memory; a
background thread waits for Orbax and commits; the next `save`, `wait`, or any read of that name
waits for it first. Call `wait` before the process exits: interpreter shutdown stops Orbax's
writer pools, so a save still pending then is never committed (the previous one stays).
Fault points (``SID_FAILPOINT``): ``orbax.started`` (async save running, nothing committed),
``orbax.finalised`` (Orbax folder complete, record not yet replaced), ``orbax.committed`` (record
replaced, superseded folder not yet deleted).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import secrets
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sid_stores import _orbax_layout as layout_codec
from sid_stores._base import check_name, name_sort_key
from sid_stores.config import OrbaxConfig
from sid_stores._orbax_layout import one_line as _one_line
from sid_stores._orbax_layout import root_of as _root_of
from sidcore.api import CheckpointError, atomic_write, failpoint, uri_scheme

__all__ = ["FORMAT", "OrbaxStore", "build", "detect_local", "is_orbax_dir"]

log = logging.getLogger(__name__)

FORMAT = "sid-orbax/1"
RECORD_PREFIX = "orbax_"
RECORD_SUFFIX = ".json"
# orbax_<name>.<8 hex session><4 digit count>, or Orbax's temporary form of it (a killed save)
_OWN_FOLDER = re.compile(r"^orbax_[a-z][a-z0-9_]*\.[0-9a-f]{8}\d{4}(\.orbax-checkpoint-tmp.*)?$")
_ORBAX_DONE = "_CHECKPOINT_METADATA"  # orbax writes it when a checkpoint folder is complete
_IN_FLIGHT: set[str] = set()  # folders being written by any store instance of this process


def _name_of_record(filename: str) -> str | None:
    if filename.startswith(RECORD_PREFIX) and filename.endswith(RECORD_SUFFIX):
        name = filename[len(RECORD_PREFIX):-len(RECORD_SUFFIX)]
        try:
            return check_name(name)
        except CheckpointError:
            return None
    return None


def is_orbax_dir(path: str | os.PathLike[str]) -> bool:
    """Whether `path` (local dir, ``file://`` or ``gs://``) holds an orbax store: at least one
    ``orbax_<name>.json`` commit record with format ``sid-orbax/1``."""
    try:
        return bool(OrbaxStore(os.fspath(path))._records())
    except (CheckpointError, OSError, ImportError):  # ImportError: gs:// without gcsfs
        return False


def detect_local(uri: str) -> bool:
    """The store's ``detect`` hook for the kernel: local folders only, so resolving a ``gs://`` URI
    never lists a bucket (no network for a dry run); orbax checkpoints on GCS are named
    ``orbax+gs://bucket/prefix`` (the scheme this store registers)."""
    return uri_scheme(str(uri)) == "file" and is_orbax_dir(uri)


class _Pending:
    """A started save: its name, Orbax folder, record and the thread that commits it."""

    def __init__(self, name: str, folder: str, record: dict[str, Any]) -> None:
        self.name, self.folder, self.record = name, folder, record
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None


class OrbaxStore:
    """`sidcore.interfaces.CheckpointStore` over Orbax (see the module docstring)."""
    sharded = True  # every process saves its device arrays

    def __init__(self, uri: str | os.PathLike[str], cfg: OrbaxConfig | None = None) -> None:
        self.uri = os.fspath(uri)
        self.cfg = cfg or OrbaxConfig()
        self.root = _root_of(self.uri)
        self._local = isinstance(self.root, Path)
        self._saver: Any = None
        self._pending: _Pending | None = None
        self._session: str | None = None
        self._count = 0

    # -- paths and records -----------------------------------------------------------------
    def _where(self, filename: str) -> str:
        return str(self.root / filename)

    def _record_file(self, name: str) -> str:
        return f"{RECORD_PREFIX}{name}{RECORD_SUFFIX}"

    def _records(self) -> list[str]:
        """Names that have a record file (intact or not)."""
        try:
            entries = [p.name for p in self.root.iterdir()]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise CheckpointError(f"{self.root}: cannot list ({exc.strerror or exc})") from None
        return [n for n in map(_name_of_record, entries) if n is not None]

    def _read_record(self, name: str) -> dict[str, Any] | None:
        path = self.root / self._record_file(name)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
        return layout_codec.parse_record(raw, FORMAT, where=str(path))

    def _write_record(self, name: str, record: Mapping[str, Any]) -> None:
        data = json.dumps(record, indent=1, sort_keys=True) + "\n"
        path = self.root / self._record_file(name)
        if self._local:
            atomic_write(path, data, error=CheckpointError)
        else:  # one object PUT: GCS replaces objects atomically
            try:
                path.write_text(data)
            except OSError as exc:
                raise CheckpointError(f"{path}: cannot write ({exc})") from None

    def _problem(self, name: str, record: Mapping[str, Any]) -> str | None:
        """Why a committed record cannot be restored (None when its folder looks complete)."""
        folder = record.get("folder")
        if not record["items"]:  # nothing but plain values: the record is the whole checkpoint
            return None
        if not isinstance(folder, str) or "/" in folder or not folder.startswith(f"{RECORD_PREFIX}{name}."):
            return f"{self._where(self._record_file(name))}: bad folder entry {folder!r}"
        base = self.root / folder
        if not (base / _ORBAX_DONE).exists():
            return f"{base}: orbax folder missing or incomplete (its record {self._record_file(name)} exists)"
        for item in record["items"]:
            if not (base / item / "_METADATA").exists():
                return f"{base / item}: orbax item missing or incomplete"
        return None

    def _rmtree(self, folder: str) -> None:
        path = self.root / folder
        try:
            if self._local:
                shutil.rmtree(path)
            else:
                path.rmtree()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("%s: cannot delete (%s)", path, exc)

    # -- orbax -----------------------------------------------------------------------------
    def _handler(self) -> Any:
        import orbax.checkpoint as ocp

        items = {item: ocp.PyTreeCheckpointHandler(use_ocdbt=self.cfg.use_ocdbt)
                 for item in (layout_codec.PARAMS, layout_codec.STATE)}
        return ocp.CompositeCheckpointHandler(**items)

    def _checkpointer(self) -> Any:
        if self._saver is None:
            import orbax.checkpoint as ocp

            self._saver = ocp.AsyncCheckpointer(
                self._handler(), async_options=ocp.AsyncOptions(timeout_secs=self.cfg.save_timeout_s))
        return self._saver

    def _token(self) -> str:
        """A folder suffix unique to this save and equal on every process."""
        import jax

        if self._session is None:
            session = secrets.randbits(31)
            if jax.process_count() > 1:
                import numpy as np
                from jax.experimental import multihost_utils

                session = int(multihost_utils.broadcast_one_to_all(np.int32(session)))
            self._session = f"{session:08x}"
        self._count += 1
        return f"{self._session}{self._count:04d}"

    def _clean(self) -> None:
        """Remove folders no record points to (killed or superseded saves), process 0 only."""
        keep = set()
        for name in self._records():
            try:
                record = self._read_record(name)
            except CheckpointError:
                record = None
            if record and isinstance(record.get("folder"), str):
                keep.add(record["folder"])
        try:
            entries = [p.name for p in self.root.iterdir()]
        except (FileNotFoundError, NotADirectoryError):
            return
        busy = {Path(f).name for f in _IN_FLIGHT if str(Path(f).parent) == str(self.root)}
        for entry in entries:  # only folders of the shape this store names them; never anything else
            if _OWN_FOLDER.match(entry) and entry not in keep and entry.split(".orbax-checkpoint-tmp")[0] not in busy:
                log.info("%s: removing orphaned orbax folder", self.root / entry)
                self._rmtree(entry)

    # -- protocol --------------------------------------------------------------------------
    def save(self, name: str, tree: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        """Start saving `tree` under `name` (every process calls it; see the module docstring)."""
        import jax
        import orbax.checkpoint as ocp

        check_name(name)
        self.wait()
        where = f"{self.uri}#{name}"
        layout, items = layout_codec.encode(tree, where=where)
        if not isinstance(meta, Mapping):
            raise CheckpointError(f"{where}: checkpoint meta must be a dict, got {type(meta).__name__}")
        record = {"format": FORMAT, "name": name, "items": sorted(items), "layout": layout,
                  "meta": dict(meta), "process_count": jax.process_count()}
        try:
            json.dumps(record)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: checkpoint meta is not JSON-serializable ({exc})") from None
        primary = jax.process_index() == 0
        if self._session is None and primary:
            self._clean()
        folder = f"{RECORD_PREFIX}{name}.{self._token()}"
        record["folder"] = folder
        pending = _Pending(name, folder, record)
        _IN_FLIGHT.add(str(self.root / folder))
        if items:
            if self._local:
                self.root.mkdir(parents=True, exist_ok=True)
            args = ocp.args.Composite(**{k: ocp.args.PyTreeSave(v) for k, v in items.items()})
            try:
                self._checkpointer().save(self.root / folder, args=args)
            except Exception as exc:  # noqa: BLE001 - orbax/tensorstore raise many types
                _IN_FLIGHT.discard(str(self.root / folder))
                raise CheckpointError(f"{self.root / folder}: orbax save failed ({_one_line(exc)})") from None
        failpoint("orbax.started")
        self._pending = pending
        pending.thread = threading.Thread(target=self._finish, args=(pending, primary, bool(items)),
                                          name=f"sid-orbax-commit-{name}", daemon=True)
        pending.thread.start()
        if not self.cfg.async_save:
            self.wait()

    def _finish(self, pending: _Pending, primary: bool, wrote: bool) -> None:
        try:
            if wrote:
                self._checkpointer().wait_until_finished()
            failpoint("orbax.finalised")
            if not primary:
                return
            pending.record["saved_at"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
            try:
                old = self._read_record(pending.name)
            except CheckpointError:
                old = None
            self._write_record(pending.name, pending.record)
            failpoint("orbax.committed")
            if old and isinstance(old.get("folder"), str) and old["folder"] != pending.folder:
                self._rmtree(old["folder"])
        except BaseException as exc:  # noqa: BLE001 - re-raised by wait()
            pending.error = exc
        finally:
            _IN_FLIGHT.discard(str(self.root / pending.folder))

    def wait(self) -> None:
        """Block until the started save is committed (raises its error, as `CheckpointError`)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        assert pending.thread is not None
        pending.thread.join()
        if pending.error is not None:
            if isinstance(pending.error, CheckpointError):
                raise pending.error
            raise CheckpointError(f"{self.root / pending.folder}: orbax save failed "
                                  f"({_one_line(pending.error)})") from None

    def _settle(self, name: str) -> None:
        if self._pending is not None and self._pending.name == name:
            self.wait()

    def restore(self, name: str, *, params_only: bool = False,
                shardings: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(tree, meta)`` of a committed checkpoint; numpy arrays, or `jax.Array` s for the leaves
        named in `shardings` (``{param key: Sharding}``; other leaves by tree path, e.g.
        ``"opt_state/0/mu/a/b"``; any mesh and process count)."""
        check_name(name)
        self._settle(name)
        record = self._read_record(name)
        where = self._where(self._record_file(name))
        if record is None:
            raise CheckpointError(f"{where}: checkpoint '{name}' not found")
        problem = self._problem(name, record)
        if problem:
            raise CheckpointError(problem)
        layout = record["layout"]
        items = [i for i in record["items"] if not params_only or i == layout_codec.PARAMS]
        restored: dict[str, Any] = {}
        if items:
            import orbax.checkpoint as ocp

            args = ocp.args.Composite(**{i: ocp.args.PyTreeRestore(
                restore_args=layout_codec.restore_args(layout, i, shardings)) for i in items})
            folder = self.root / record["folder"]
            try:
                with ocp.Checkpointer(self._handler()) as reader:
                    restored = dict(reader.restore(folder, args=args))
            except Exception as exc:  # noqa: BLE001 - orbax/tensorstore raise many types
                raise CheckpointError(f"{folder}: orbax restore failed ({_one_line(exc)})") from None
        tree = layout_codec.decode(layout, restored, params_only=params_only, where=where)
        return tree, dict(record["meta"])

    def names(self) -> list[str]:
        """Committed checkpoints whose Orbax folder is complete (a save in flight is not listed)."""
        return sorted(self._scan()[0], key=name_sort_key)

    def damaged(self) -> dict[str, str]:
        """``{name: reason}`` of records that exist but cannot be restored."""
        return self._scan()[1]

    def _scan(self) -> tuple[list[str], dict[str, str]]:
        good, bad = [], {}
        for name in self._records():
            try:
                record = self._read_record(name)
            except CheckpointError as exc:
                bad[name] = str(exc)
                continue
            if record is None:
                continue  # deleted while listing
            problem = self._problem(name, record)
            if problem:
                bad[name] = problem
            else:
                good.append(name)
        return good, bad

    def delete(self, name: str) -> None:
        """Remove a checkpoint: record first (atomic disappearance), then its folder."""
        check_name(name)
        self._settle(name)
        try:
            record = self._read_record(name)
        except CheckpointError:
            record = None
        path = self.root / self._record_file(name)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot delete ({exc.strerror or exc})") from None
        if record and isinstance(record.get("folder"), str):
            self._rmtree(record["folder"])

    def __repr__(self) -> str:
        return f"OrbaxStore({self.uri!r})"


def build(cfg: OrbaxConfig, *, uri: str) -> OrbaxStore:
    """Factory of the `orbax` store; `uri` is a local directory, ``file://...`` or ``gs://bucket/prefix``."""
    scheme = uri_scheme(str(uri).removeprefix("orbax+")) if uri else ""
    if scheme not in ("file", "gs"):
        raise CheckpointError(f"store 'orbax' needs a local directory or gs://bucket/prefix, got {uri!r}")
    if scheme == "gs":
        import importlib.util

        if importlib.util.find_spec("gcsfs") is None:
            raise CheckpointError(f"store 'orbax' on {uri} needs gcsfs (orbax reaches gs:// through "
                                  "etils.epath): pip install 'sid[gcs]'")
    return OrbaxStore(uri, cfg)
