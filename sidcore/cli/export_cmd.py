"""``sid export hf``: a run's weights as an HF folder."""

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
@click.option("--overwrite", is_flag=True,
              help="Replace OUT_DIR if it is an earlier sid export (never any other folder).")
@click.pass_obj
def export_hf_cmd(state, run_dir: str, out_dir: str, name: str | None, overwrite: bool) -> None:
    """Write RUN_DIR's weights + tokenizer as an HF folder (AutoModelForCausalLM.from_pretrained loads it).

    OUT_DIR must be new or empty (or an earlier sid export, with --overwrite) and outside RUN_DIR."""
    from sidcore.config import loading
    from sidcore.export.hf import export_run

    from sidcore.export.hf import check_destination

    check_destination(Path(run_dir), Path(out_dir), overwrite=overwrite)  # before anything is loaded
    cfg = loading.load_config(Path(run_dir) / "config.resolved.yaml", state.plugins.registry,
                              overrides=[f"output_dir={run_dir}"])
    out = export_run(cfg, state.plugins, Path(out_dir), name=name, overwrite=overwrite)
    click.echo(f"exported {out}")
