"""The run directory's own files: ``config.resolved.yaml``, ``plugins.json``, JSON outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sidcore.config import loading
from sidcore.config.schema import RunConfig
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
