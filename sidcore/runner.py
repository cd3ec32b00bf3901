"""What ``sid run`` does after config resolution: ask the launcher for a plan, then execute it.

The ``local`` launcher answers "in process": the run directory gets ``config.resolved.yaml`` and
``plugins.json`` and then the job runs here (train, eval or train_eval). Other launchers return
argv plans that `sidcore.launching.execute` runs (or prints, with ``--dry-run``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from sidcore.config import loading
from sidcore.config.schema import RunConfig
from sidcore.plugins import Plugins

log = logging.getLogger(__name__)


def build_component(plugins: Plugins, kind: str, comp: Any, **kwargs: Any) -> Any:
    """Instantiate the selected component of `kind` (its factory may import jax/optax now)."""
    return plugins.registry.get(kind, comp.name).build(comp.options, **kwargs)


def write_run_files(cfg: RunConfig, plugins: Plugins) -> Path:
    """Create the run dir and write ``config.resolved.yaml`` + ``plugins.json`` (process 0 only)."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "config.resolved.yaml", loading.dump_yaml(cfg))
    atomic_write(out / "plugins.json", json.dumps([r.to_json() for r in plugins.records], indent=2) + "\n")
    return out


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to a temp file beside `path`, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def launch(cfg: RunConfig, plugins: Plugins, *, config_path: str, argv: Sequence[str], dry_run: bool = False) -> None:
    """Plan the run with the selected launcher and execute (or print) the plan."""
    from sidcore.launching import execute, format_plan

    launcher = build_component(plugins, "launcher", cfg.launcher)
    request = {"argv": list(argv), "config_path": config_path, "run_mode": cfg.run_mode,
               "output_dir": cfg.output_dir}
    plan = launcher.plan(request)
    if plan.in_process:
        if dry_run:
            import click

            click.echo(f"in-process {cfg.run_mode} run -> {cfg.output_dir}")
            click.echo(loading.dump_yaml(cfg), nl=False)
            return
        run_job(cfg, plugins)
        return
    if dry_run:
        import click

        click.echo(format_plan(plan))
        return
    execute(plan)


def run_job(cfg: RunConfig, plugins: Plugins) -> dict[str, Any]:
    """Run train / eval / train_eval in this process and return the run summary."""
    from sidcore.job import run_in_process  # imports jax: only when a job really runs

    return run_in_process(cfg, plugins)
