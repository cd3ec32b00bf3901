"""Kernel commands beyond run/config/plugins: ``sid export hf`` and ``sid report``."""

from __future__ import annotations


from pathlib import Path

import click


@click.group("export")
def export() -> None:
    """Export a run's weights to other formats."""


@export.command("hf")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--checkpoint", "name", default=None, help="Checkpoint name (default: best, else last).")
def export_hf_cmd(run_dir: str, out_dir: str, name: str | None) -> None:
    """Write RUN_DIR's weights + tokenizer as an HF folder (AutoModelForCausalLM.from_pretrained loads it)."""
    from sidcore.cli import get_plugins
    from sidcore.config import loading

    cfg = loading.load_config(Path(run_dir) / "config.resolved.yaml", get_plugins().registry,
                              overrides=[f"output_dir={run_dir}"])
    from sidcore.export import export_run

    out = export_run(cfg, get_plugins(), Path(out_dir), name=name)
    click.echo(f"exported {out}")


@click.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--out", "out_dir", default="report", show_default=True, help="Folder for the PNG plots.")
def report(run_dirs: tuple[str, ...], out_dir: str) -> None:
    """Plot loss, learning rate and eval metrics of several runs together (PNG)."""
    from sidcore.report import write_report

    for path in write_report([Path(r) for r in run_dirs], Path(out_dir)):
        click.echo(str(path))


def add_kernel_commands(cli: click.Group) -> None:
    cli.add_command(export)
    cli.add_command(report)

