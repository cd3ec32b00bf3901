"""The ``sid`` command line (click).

``main()`` loads plugins tolerantly (a broken plugin never breaks ``sid --help``), lets plugins add
commands through ``register_commands``, then dispatches. A `SidError` becomes one ``Error: ...``
line on stderr with exit code 1 (2 for usage errors); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys

import click

from sidcore import __version__
from sidcore.config import loading
from sidcore.errors import SidError, UsageError
from sidcore.plugins import Plugins, load_plugins

_PLUGINS: Plugins | None = None
_DEBUG = False


def get_plugins() -> Plugins:
    """The CLI's lazily loaded plugin set (tests call `reset_plugins`)."""
    global _PLUGINS
    if _PLUGINS is None:
        _PLUGINS = load_plugins()
    return _PLUGINS


def reset_plugins() -> None:
    global _PLUGINS
    _PLUGINS = None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sid")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """sid: semantic-ID generative recommendation on JAX (MiniOneRec-compatible)."""
    global _DEBUG
    _DEBUG = _DEBUG or debug


# ----------------------------------------------------------------------------------------------
# sid plugins ...
# ----------------------------------------------------------------------------------------------


@cli.group()
def plugins() -> None:
    """Inspect installed plugins and their components."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--kind", type=click.Choice(["optimizer", "decoder", "metric", "store", "launcher"]),
              help="Only plugins providing this kind of component.")
@click.option("--external", is_flag=True, help="Hide built-in plugins.")
@click.option("--requirements", is_flag=True, help="Print dist==version of external plugins.")
@click.option("--strict", is_flag=True, help="Exit non-zero if any plugin failed to load.")
def plugins_list(as_json: bool, kind: str | None, external: bool, requirements: bool, strict: bool) -> None:
    """List plugins: NAME, VERSION, SOURCE, STATUS, COMPONENTS (kind:name)."""
    records = get_plugins().records
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
    if (strict or _strict_env()) and any(r.status == "error" for r in get_plugins().records):
        sys.exit(1)


def _strict_env() -> bool:
    from sidcore.plugins import strict_from_env

    return strict_from_env()


# ----------------------------------------------------------------------------------------------
# sid config ...
# ----------------------------------------------------------------------------------------------


@cli.group()
def config() -> None:
    """Show or validate run configurations."""


@config.command("show")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Config YAML.")
@click.option("--flat", is_flag=True, help="Print dotted key: value lines.")
@click.option("--help-keys", is_flag=True, help="Print every config key with its help text.")
@click.argument("overrides", nargs=-1)
def config_show(config_path: str | None, flat: bool, help_keys: bool, overrides: tuple[str, ...]) -> None:
    """Print the resolved config (defaults < base < file < KEY=VALUE overrides)."""
    if help_keys:
        from sidcore.config.help import key_help

        for line in key_help(get_plugins().registry):
            click.echo(line)
        return
    cfg = loading.load_config(config_path, get_plugins().registry, overrides=overrides)
    if flat:
        for k, val in loading.flatten(loading.to_dict(cfg)).items():
            click.echo(f"{k}: {json.dumps(val)}")
    else:
        click.echo(loading.dump_yaml(cfg), nl=False)


@config.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
def config_validate(paths: tuple[str, ...]) -> None:
    """Validate config files (exit 1 on the first invalid one)."""
    for p in paths:
        loading.load_config(p, get_plugins().registry)
        click.echo(f"ok  {p}")


# ----------------------------------------------------------------------------------------------
# sid run
# ----------------------------------------------------------------------------------------------

_KIND_FLAGS = ("optimizer", "decoder", "store", "launcher")


@cli.command(context_settings={"ignore_unknown_options": False})
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Config YAML.")
@click.option("--run-mode", type=click.Choice(["train", "eval", "train_eval"]), help="Sugar for run_mode=...")
@click.option("--plugin", "plugin_names", multiple=True,
              help="Select a component by name; its kind is inferred (e.g. optax_muon -> optimizer.name).")
@click.option("--optimizer", help="Sugar for optimizer.name=...")
@click.option("--decoder", help="Sugar for decoder.name=...")
@click.option("--store", help="Sugar for store.name=...")
@click.option("--launcher", help="Sugar for launcher.name=...")
@click.option("--output-dir", help="Sugar for output_dir=...")
@click.option("--dry-run", is_flag=True, help="Resolve config and print the launch plan; run nothing.")
@click.argument("overrides", nargs=-1)
def run(config_path: str, run_mode: str | None, plugin_names: tuple[str, ...], optimizer: str | None,
        decoder: str | None, store: str | None, launcher: str | None, output_dir: str | None, dry_run: bool,
        overrides: tuple[str, ...]) -> None:
    """Train and/or evaluate: sid run --config PATH [--plugin NAME]... [KEY=VALUE ...]."""
    from sidcore.runner import launch

    registry = get_plugins().registry
    selections: dict[str, str] = {}
    for name in plugin_names:
        spec = registry.find(name)
        if spec.kind == "metric":
            raise UsageError(f"--plugin '{name}' is a metric; set metrics=[...] instead")
        selections[spec.kind] = name
    for kind, value in zip(_KIND_FLAGS, (optimizer, decoder, store, launcher)):
        if value:
            if kind in selections and selections[kind] != value:
                raise UsageError(f"--{kind} {value} conflicts with --plugin {selections[kind]}")
            selections[kind] = value
    extra = list(overrides)
    if run_mode:
        extra.append(f"run_mode={run_mode}")
    if output_dir:
        extra.append(f"output_dir={output_dir}")
    cfg = loading.load_config(config_path, registry, overrides=extra, selections=selections)
    argv = _replay_argv(config_path, selections, extra)
    launch(cfg, get_plugins(), config_path=config_path, argv=argv, dry_run=dry_run)


def _replay_argv(config_path: str, selections: dict[str, str], overrides: list[str]) -> list[str]:
    """The ``sid run`` arguments a launcher replays in child processes (launcher choice removed)."""
    argv = ["--config", config_path]
    for kind, name in selections.items():
        if kind != "launcher":
            argv += [f"--{kind}", name]
    return argv + [o for o in overrides if not o.startswith("launcher.")]


# ----------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------


def _add_plugin_commands(group: click.Group) -> None:
    plugins_ = get_plugins()
    for rec in plugins_.records:
        plugin = plugins_.pm.get_plugin(rec.name)
        impl = getattr(plugin, "register_commands", None) if plugin is not None else None
        if impl is None or rec.status != "ok":
            continue
        try:
            impl(cli=group)
        except Exception as exc:  # noqa: BLE001 - a plugin's command bug must not break sid
            rec.status, rec.error = "error", f"{type(exc).__name__}: {exc}"
            click.echo(f"Warning: plugin '{rec.name}' failed to register commands: {rec.error}", err=True)


_COMMANDS_ADDED = False


def build_cli() -> click.Group:
    """The top-level group with kernel and plugin commands attached (idempotent)."""
    global _COMMANDS_ADDED
    if not _COMMANDS_ADDED:
        from sidcore.commands import add_kernel_commands

        _COMMANDS_ADDED = True
        add_kernel_commands(cli)
        _add_plugin_commands(cli)
    return cli


def _setup_logging() -> None:
    """Progress lines of sid's own loggers on stderr (library code only logs, never prints)."""
    import logging

    logger = logging.getLogger("sidcore")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[sid] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if _DEBUG else logging.INFO)
        logger.propagate = False


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    global _DEBUG
    args = list(sys.argv[1:] if argv is None else argv)
    _DEBUG = "--debug" in args
    _setup_logging()
    # transformers' "PyTorch was not found" advisory is noise for sid (it never needs torch), and
    # forked tokenizer threads are pointless here; both only as defaults a user can override.
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        group = build_cli()
        group.main(args=args, prog_name="sid", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SidError as exc:
        if _DEBUG:
            raise
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
