"""``sid config show|validate``: the resolved config of a run, and config files checked."""

from __future__ import annotations

import json

import click

from sidcore.config import loading


@click.group()
def config() -> None:
    """Show or validate run configurations."""


@config.command("show")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Config YAML.")
@click.option("--flat", is_flag=True, help="Print dotted key: value lines.")
@click.option("--help-keys", is_flag=True, help="Print every config key with its help text.")
@click.argument("overrides", nargs=-1)
@click.pass_obj
def config_show(state, config_path: str | None, flat: bool, help_keys: bool, overrides: tuple[str, ...]) -> None:
    """Print the resolved config (defaults < base < file < KEY=VALUE overrides)."""
    registry = state.plugins.registry
    if help_keys:
        from sidcore.config.help import key_help

        for line in key_help(registry):
            click.echo(line)
        return
    cfg = loading.load_config(config_path, registry, overrides=overrides)
    if flat:
        for k, val in loading.flatten(loading.to_dict(cfg)).items():
            click.echo(f"{k}: {json.dumps(val)}")
    else:
        click.echo(loading.dump_yaml(cfg), nl=False)


@config.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.pass_obj
def config_validate(state, paths: tuple[str, ...]) -> None:
    """Validate config files (exit 1 on the first invalid one)."""
    for p in paths:
        loading.load_config(p, state.plugins.registry)
        click.echo(f"ok  {p}")
