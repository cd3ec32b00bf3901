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
@click.option("--out", "out_dir", default="report", show_default=True, help="Folder for the plots and summary.")
def report(run_dirs: tuple[str, ...], out_dir: str) -> None:
    """Compare runs: PNG plots of loss, learning rate and eval metrics, and summary.md/.json with
    each experiment's final HR/NDCG as mean ± 95 % CI over its seeds (runs whose resolved configs
    differ only in seed and run location form one experiment)."""
    from sidcore.report import write_report, write_summary

    dirs = [Path(r) for r in run_dirs]
    summary_files = write_summary(dirs, Path(out_dir))
    for path in write_report(dirs, Path(out_dir)) + summary_files:
        click.echo(str(path))
    if summary_files:
        click.echo(summary_files[0].read_text(encoding="utf-8"), nl=False)


def add_kernel_commands(cli: click.Group) -> None:
    cli.add_command(export)
    cli.add_command(report)

