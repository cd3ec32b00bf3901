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
    from sidcore.errors import CheckpointError

    src_base, name = split_uri(src)
    dst_base, dst_name = split_uri(dst)
    if dry_run:
        click.echo(f"copy {src_base}#{name or 'best|last'} -> {dst_base}#{dst_name or name or 'same'}")
        return
    source = _store(src_base)
    if name is None:
        names = source.names()
        name = "best" if "best" in names else "last" if "last" in names else None
        if name is None:
            raise CheckpointError(f"{src_base}: no checkpoint to copy (found: {', '.join(names) or 'none'})")
    digest = copy_checkpoint(source, _store(dst_base), name, dst_name=dst_name)
    click.echo(f"copied {src_base}#{name} -> {dst_base}#{dst_name or name} sha256={digest}")
