"""``sid pipeline --config P.yaml``: every stage of your own catalog in one command (sidcore/pipeline)."""

from __future__ import annotations

import click

from sidcore.pipeline.spec import STAGES

_STAGE = click.Choice(list(STAGES))


@click.command("pipeline")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Pipeline YAML.")
@click.option("--dry-run", is_flag=True, help="List each stage as run / skip and the sid commands; write nothing.")
@click.option("--from", "first", type=_STAGE, default=None, help="First stage to run (earlier ones must be done).")
@click.option("--until", "last", type=_STAGE, default=None, help="Last stage to run.")
@click.option("--force-stage", "force", type=_STAGE, multiple=True,
              help="Run this stage even if its record matches, replacing outputs that have no record (repeatable).")
@click.option("--work-dir", default=None, type=click.Path(file_okay=False),
              help="Instead of the YAML's work_dir: the folder all stages write into.")
@click.pass_obj
def pipeline(state, config_path: str, dry_run: bool, first: str | None, last: str | None, force: tuple[str, ...],
             work_dir: str | None) -> None:
    """data -> embed -> index -> convert -> sft -> rl -> eval; a stage whose record matches is skipped."""
    from sidcore.pipeline.runner import run_pipeline
    from sidcore.pipeline.spec import load_spec

    spec = load_spec(config_path, work_dir=work_dir)
    group = click.get_current_context().find_root().command
    assert isinstance(group, click.Group)
    run_pipeline(spec, group, state.plugins.registry, dry_run=dry_run, first=first, last=last, force=force)


__all__ = ["pipeline"]
