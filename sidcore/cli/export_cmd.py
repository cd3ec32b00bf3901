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
@click.pass_obj
def export_hf_cmd(state, run_dir: str, out_dir: str, name: str | None) -> None:
    """Write RUN_DIR's weights + tokenizer as an HF folder (AutoModelForCausalLM.from_pretrained loads it)."""
    from sidcore.config import loading
    from sidcore.run.export import export_run

    cfg = loading.load_config(Path(run_dir) / "config.resolved.yaml", state.plugins.registry,
                              overrides=[f"output_dir={run_dir}"])
    out = export_run(cfg, state.plugins, Path(out_dir), name=name)
    click.echo(f"exported {out}")
