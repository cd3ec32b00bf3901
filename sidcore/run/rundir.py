"""The run directory: creating it, its lock, and its own files (``config.resolved.yaml``,
``plugins.json``, JSON outputs)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from sidcore.config import loading
from sidcore.config.schema import RunConfig
from sidcore.errors import ConfigError
from sidcore.files import atomic_write
from sidcore.plugins import Plugins


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_run_files(cfg: RunConfig, plugins: Plugins) -> Path:
    """Create the run dir and write ``config.resolved.yaml`` + ``plugins.json`` (process 0 only)."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "config.resolved.yaml", loading.dump_yaml(cfg))
    atomic_write(out / "plugins.json", json.dumps([r.to_json() for r in plugins.records], indent=2) + "\n")
    return out



LOCK_FILE = ".sid.lock"


def prepare_dir(output_dir: str) -> Path:
    """Create the run directory, or a one-line `ConfigError` saying why it cannot be."""
    out = Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"output_dir {out}: a file (or a path through a file) is in the way") from None
    except OSError as exc:
        raise ConfigError(f"output_dir {out}: cannot create ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK):
        raise ConfigError(f"output_dir {out}: not writable")
    return out


def remove_if_only_lock(created: list[Path]) -> None:
    """Remove folders this run created (deepest first) when they hold nothing but its lock file (a
    failed start): what the user had is untouched, what the failed run made is gone."""
    for d in created:
        try:
            if d.is_dir() and {p.name for p in d.iterdir()} <= {LOCK_FILE}:
                (d / LOCK_FILE).unlink(missing_ok=True)
                d.rmdir()
        except OSError:
            pass


class RunLock:
    """An exclusive lock on a run directory for the life of a run (``flock`` on ``.sid.lock``).

    A second run into the same directory fails at once with the holder's pid and host; the lock
    goes away with the process (no stale lock after kill -9).
    """

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_FILE
        self._fh: Any = None
        self._previous = ""

    def __enter__(self) -> "RunLock":
        import fcntl

        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise ConfigError(f"output_dir {self.path.parent} is in use by {holder}; wait for it to finish or "
                              "choose another output_dir") from None
        fh.seek(0)
        self._previous = fh.read()  # put back on release: a refused start changes no byte of the folder
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on host {socket.gethostname()} since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *_: Any) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            self._fh.write(self._previous)
            self._fh.close()
            self._fh = None
