"""``sid plugins list``: what is installed (built-ins and third-party), per plugin."""

from __future__ import annotations

import json
import sys

import click

from sidcore.hookspecs import KINDS
from sidcore.plugins import strict_from_env


@click.group()
def plugins() -> None:
    """Inspect installed plugins and their components."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--kind", type=click.Choice(list(KINDS)), help="Only plugins providing this kind of component.")
@click.option("--external", is_flag=True, help="Hide built-in plugins.")
@click.option("--requirements", is_flag=True, help="Print dist==version of external plugins.")
@click.option("--strict", is_flag=True, help="Exit non-zero if any plugin failed to load.")
@click.pass_obj
def plugins_list(state, as_json: bool, kind: str | None, external: bool, requirements: bool, strict: bool) -> None:
    """List plugins: NAME, VERSION, SOURCE, STATUS, COMPONENTS (kind:name)."""
    records = state.plugins.records
    if external:
        records = [r for r in records if r.source != "builtin"]
    if kind:
        records = [r for r in records if any(c.startswith(kind + ":") for c in r.components)]
    if requirements:
        for r in records:
            if r.source == "external" and r.dist:
                click.echo(f"{r.dist}=={r.version}")
    elif as_json:
        click.echo(json.dumps([r.to_json() for r in records], indent=2))
    else:
        rows = [("NAME", "VERSION", "SOURCE", "STATUS", "COMPONENTS")]
        for r in records:
            status = r.status if r.status != "error" else f"error: {r.error}"
            rows.append((r.name, r.version or "-", r.source, status, " ".join(r.components) or "-"))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            click.echo("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    if (strict or strict_from_env()) and any(r.status == "error" for r in state.plugins.records):
        sys.exit(1)
