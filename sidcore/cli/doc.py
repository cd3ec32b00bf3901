"""Render ``docs/cli.md`` from the CLI's own ``--help`` texts (a test keeps the file in sync).

Regenerate with ``COLUMNS=100 python -m sidcore.cli.doc > docs/cli.md``.
"""

from __future__ import annotations

import click


def _walk(cmd: click.Command, path: list[str], parent: click.Context | None = None):
    # Contexts chain like a real invocation, so inherited settings (e.g. `-h`) show the same way.
    ctx = click.Context(cmd, info_name=path[-1], parent=parent, **cmd.context_settings)
    yield path, cmd, ctx
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from _walk(cmd.commands[name], [*path, name], ctx)


def render() -> str:
    from sidcore.cli import build_cli

    root = build_cli()
    out = ["# `sid` command reference", "",
           "Generated from `--help` by `python -m sidcore.cli.doc`; `tests/cli/test_clidoc.py` fails when stale.", ""]
    for path, cmd, ctx in _walk(root, ["sid"]):
        out += [f"## {' '.join(path)}", "", "```", cmd.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
