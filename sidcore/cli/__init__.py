"""The ``sid`` command line (click): one module per command group.

`main` loads plugins tolerantly (a broken plugin never breaks ``sid --help``), builds the group
with the kernel commands and every plugin's ``register_commands``, then dispatches with a `CliState`
(the loaded plugins, ``--debug``) as click's context object — commands read it with
``@click.pass_obj``; nothing is a module global. A `SidError` becomes one ``Error: ...`` line on
stderr with exit code 1 (2 for usage errors); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import logging
import os
import sys

import attrs
import click

from sidcore import __version__, interrupts

interrupts.install()  # as early as sid's own code runs: a Ctrl-C during start-up is not lost
from sidcore.errors import SidError
from sidcore.plugins import Plugins, load_plugins


@attrs.define(kw_only=True)
class CliState:
    """click's context object for every ``sid`` command."""

    plugins: Plugins
    debug: bool = False


def _make_group() -> click.Group:
    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="sid")
    @click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
    @click.pass_obj
    def cli(state: CliState, debug: bool) -> None:
        """sid: semantic-ID generative recommendation on JAX (MiniOneRec-compatible)."""
        state.debug = state.debug or debug

    return cli


def build_cli(plugins: Plugins | None = None, *, debug: bool = False) -> click.Group:
    """A fresh ``sid`` group: kernel commands, then each plugin's commands (per plugin, isolated)."""
    from sidcore.cli import (baseline_cmd, config_cmds, data_cmds, export_cmd, index_cmds, pipeline_cmd, plugin_cmds,
                             report_cmd, run_cmd, serve_cmds)

    plugins = load_plugins() if plugins is None else plugins
    group = _make_group()
    group.context_settings["obj"] = CliState(plugins=plugins, debug=debug)
    for cmd in (plugin_cmds.plugins, config_cmds.config, run_cmd.run, export_cmd.export, report_cmd.report,
                serve_cmds.recommend, serve_cmds.serve):
        group.add_command(cmd)
    group.add_command(index_cmds.make_index_group())
    group.add_command(baseline_cmd.make_baseline_group())
    group.add_command(data_cmds.data)
    group.add_command(pipeline_cmd.pipeline)
    plugins.add_commands(group)
    return group


def _setup_logging(debug: bool) -> None:
    """Progress lines of sid's own loggers on stderr (library code only logs, never prints)."""
    logger = logging.getLogger("sidcore")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[sid] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if debug else logging.INFO)
        logger.propagate = False


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    _setup_logging(debug)
    # transformers' "PyTorch was not found" advisory is noise for sid (it never needs torch), and
    # forked tokenizer threads are pointless here; both only as defaults a user can override.
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        group = build_cli(debug=debug)
        group.main(args=args, prog_name="sid", standalone_mode=False)
    except interrupts.Interrupted as exc:
        if debug:
            raise
        click.echo(f"Error: {exc.message()}", err=True)
        interrupts.exit_now()
    except click.exceptions.Exit as exc:
        if exc.exit_code or not interrupts.received():
            sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SidError as exc:
        if debug:
            raise
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if interrupts.received():  # a signal some library swallowed: never exit 0 after it
        click.echo(f"Error: {interrupts.Interrupted(interrupts.received() or '').message()}", err=True)
        interrupts.exit_now()


__all__ = ["CliState", "build_cli", "main"]
