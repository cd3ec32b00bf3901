"""``sid checkpoint copy SRC DST``: copy a checkpoint between any two store URIs, checksum-verified."""

from __future__ import annotations

import click


def _store(uri: str):
    """The store serving `uri`, from the plugins the running ``sid`` loaded (click context)."""
    from sidcore.run.checkpoints import store_for

    return store_for(uri, click.get_current_context().obj.plugins.registry)


@click.group("checkpoint")
def checkpoint() -> None:
    """Checkpoint utilities (stores: local dir -> msgpack, gs://bucket/prefix -> gcs)."""


@checkpoint.command("copy")
@click.argument("src")
@click.argument("dst")
@click.option("--dry-run", is_flag=True, help="Print what would be copied.")
def copy(src: str, dst: str, dry_run: bool) -> None:
    """Copy SRC[#NAME] to DST[#NAME] (default name: best if present, else last)."""
    from sid_stores.copy import copy_checkpoint
    from sidcore.run.checkpoints import split_uri
    from sidcore.registry import uri_scheme

    src_base, name = split_uri(src)
    dst_base, dst_name = split_uri(dst)
    if dry_run:
        # a local source is checked (cheap, and the usual typo); a remote one would need credentials
        if uri_scheme(src_base) == "file":
            name = _source_name(_store(src_base), src_base, name)
            note = ""
        else:
            note = " (remote source not checked in --dry-run)"
        click.echo(f"copy {src_base}#{name or 'best|last'} -> {dst_base}#{dst_name or name or 'same'}{note}")
        return
    source = _store(src_base)
    name = _source_name(source, src_base, name)
    digest = copy_checkpoint(source, _store(dst_base), name, dst_name=dst_name)
    click.echo(f"copied {src_base}#{name} -> {dst_base}#{dst_name or name} sha256={digest}")


def _source_name(source, src_base: str, name: str | None) -> str:
    """The checkpoint to copy: `name` if the source has it, else best, else last; else an error."""
    from pathlib import Path

    from sidcore.errors import CheckpointError

    if uri_scheme_is_file(src_base) and not Path(src_base).is_dir():
        raise CheckpointError(f"{src_base}: no such run directory or store folder")
    names = source.names()
    if name is None:
        name = "best" if "best" in names else "last" if "last" in names else None
    if name is None or name not in names:
        raise CheckpointError(f"{src_base}: no checkpoint {name or 'best/last'} to copy "
                              f"(found: {', '.join(names) or 'none'})")
    return name


def uri_scheme_is_file(uri: str) -> bool:
    from sidcore.registry import uri_scheme

    return uri_scheme(uri) == "file"
