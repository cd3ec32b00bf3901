"""What ``sid run`` does after config resolution: ask the launcher for a plan, then execute it.

The ``local`` launcher answers "in process": the job runs here (`sidcore.run.job`). Other
launchers return argv plans that `sidcore.run.executor.execute` runs (or prints, ``--dry-run``).
"""

from __future__ import annotations

from typing import Any, Sequence

import click

from sidcore.config import loading
from sidcore.config.schema import RunConfig
from sidcore.plugins import Plugins
from sidcore.run.components import build_component


def launch(cfg: RunConfig, plugins: Plugins, *, config_path: str, argv: Sequence[str], dry_run: bool = False,
           device_memory: float | None = None) -> None:
    """Plan the run with the selected launcher and execute (or print) the plan."""
    from sidcore.run.executor import execute, format_plan

    launcher = build_component(plugins, "launcher", cfg.launcher)
    request = {"argv": list(argv), "config_path": config_path, "run_mode": cfg.run_mode,
               "output_dir": cfg.output_dir}
    plan = launcher.plan(request)
    if dry_run or not plan.in_process:  # an in-process run makes these checks (and more) itself
        from sidcore.run import preflight

        done = preflight.check(cfg, plugins, in_process=plan.in_process, device_memory=device_memory)
    if plan.in_process:
        if dry_run:
            click.echo(f"in-process {cfg.run_mode} run -> {cfg.output_dir}")
            click.echo(loading.dump_yaml(cfg), nl=False)
            click.echo(preflight.report(done))
            return
        run_job(cfg, plugins)
        return
    if dry_run:
        click.echo(format_plan(plan))
        click.echo(preflight.report(done))
        return
    execute(plan)


def run_job(cfg: RunConfig, plugins: Plugins) -> dict[str, Any]:
    """Run train / eval / train_eval in this process and return the run summary."""
    from sidcore.run.job import run_in_process  # imports jax: only when a job really runs
    from sidcore.train.profiling import session

    with session(cfg.profile, cfg.output_dir, cfg.run_mode):  # profile.steps (docs/benchmarks.md)
        return run_in_process(cfg, plugins)
