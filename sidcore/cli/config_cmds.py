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
@click.argument("paths", nargs=-1, required=True)
@click.pass_obj
def config_validate(state, paths: tuple[str, ...]) -> None:
    """Validate config files: files, folders (every *.yaml below them) and quoted globs
    ('configs/**/*.yaml' is recursive). Every file is checked; exit 1 if any is invalid."""
    from sidcore.errors import ConfigError, SidError

    files = expand_config_paths(paths)
    if len(files) == 1:  # one file: its own one-line error
        click.echo(f"ok  {files[0]}{_validate_one(state, files[0])}")
        return
    bad = 0
    for p in files:
        try:
            kind = _validate_one(state, p)
        except SidError as exc:  # every file is checked, whatever kind of error one has
            bad += 1
            click.echo(f"FAIL {exc}", err=True)
        else:
            click.echo(f"ok  {p}{kind}")
    if bad:
        raise ConfigError(f"{bad} of {len(files)} config file(s) invalid")


def _validate_one(state, path: str) -> str:
    """Check one file: a run config, or a `sid pipeline` YAML (its stages' options against their
    commands too); returns the suffix printed after ``ok``."""
    from sidcore.pipeline.spec import is_pipeline_file, load_spec

    if not is_pipeline_file(path):
        loading.load_config(path, state.plugins.registry)
        return ""
    from sidcore.pipeline.stages import check_options

    root = click.get_current_context().find_root().command
    spec = load_spec(path)
    if isinstance(root, click.Group):
        check_options(spec, root)
    return "  (sid pipeline)"


def expand_config_paths(paths: tuple[str, ...] | list[str]) -> list[str]:
    """Files as given, folders -> their *.yaml/*.yml (recursive, sorted), globs -> matches (``**``
    recursive, in Python, so it works without bash's globstar). Nothing found is an error."""
    import glob
    from pathlib import Path

    from sidcore.errors import ConfigError

    out: list[str] = []
    for raw in paths:
        p = Path(raw)
        if any(c in raw for c in "*?["):
            found = sorted(glob.glob(raw, recursive=True))
            if not found:
                raise ConfigError(f"{raw}: no file matches")
            out.extend(found)
        elif p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file())
            if not found:
                raise ConfigError(f"{raw}: no *.yaml file in this folder")
            out.extend(found)
        else:
            out.append(raw)
    return list(dict.fromkeys(out))
