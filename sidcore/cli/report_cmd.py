"""``sid report``: plots and seed statistics over run directories."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--out", "out_dir", default="report", show_default=True, help="Folder for the plots and summary.")
def report(run_dirs: tuple[str, ...], out_dir: str) -> None:
    """Compare runs: PNG plots (loss, learning rate, eval and final metrics per family, throughput)
    and summary.md/.json with each experiment's final HR/NDCG as mean ± 95 % CI over its seeds, the
    popularity baseline, final train loss and step time (runs whose resolved configs differ only in
    seed and run location form one experiment, named by the keys that differ)."""
    from sidcore.errors import UsageError
    from sidcore.report.stats import write_summary
    from sidcore.report.plots import write_report

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out_dir}: is a file, not a folder; give a folder for the report (it is created)")
    dirs = [Path(r) for r in run_dirs]
    summary_files = write_summary(dirs, out)
    for path in write_report(dirs, out) + summary_files:
        click.echo(str(path))
    if summary_files:
        click.echo(summary_files[0].read_text(encoding="utf-8"), nl=False)
