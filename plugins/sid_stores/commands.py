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
@click.option("--dry-run", is_flag=True, help="Check the source and print what would be copied.")
def copy(src: str, dst: str, dry_run: bool) -> None:
    """Copy SRC[#NAME] to DST[#NAME] (default name: best if present, else last).

    SRC may also be a checkpoint file: sid's sft_state_<name>.msgpack (with its .meta.json) or a
    bare params .msgpack written by the reference port (copied as params only, named by DST#NAME
    or the file stem)."""
    from sid_stores.copy import copy_checkpoint
    from sidcore.files import read_msgpack_file
    from sidcore.registry import local_path, uri_scheme
    from sidcore.run.checkpoints import pick_name, resolve, split_uri

    registry = click.get_current_context().obj.plugins.registry
    src_base, name, bare = resolve(local_path(src))  # file:///x reads like /x
    dst_base, dst_name = split_uri(dst)
    registry.store_for_uri(dst_base)  # an unserved scheme fails here, before anything is read or written
    if dry_run and uri_scheme(src_base) != "file":
        registry.store_for_uri(src_base)
        click.echo(f"copy {src_base}#{name or 'best|last'} -> {dst_base}#{dst_name or name or 'same'} "
                   "(remote source: existence checked when copying)")
        return
    if bare is not None:
        tree = read_msgpack_file(bare)  # validates the file
        out_name = dst_name or bare.stem.removeprefix("sft_state_").lower().replace("-", "_")
        if dry_run:
            click.echo(f"copy {bare} (bare params file) -> {dst_base}#{out_name}")
            return
        _store(dst_base).save(out_name, tree, {"source": str(bare)})
        click.echo(f"copied {bare} -> {dst_base}#{out_name} (bare params file, no optimizer state)")
        return
    source = _store(src_base)
    name = pick_name(source, src_base, name)
    if dry_run:
        click.echo(f"copy {src_base}#{name} -> {dst_base}#{dst_name or name}")
        return
    digest = copy_checkpoint(source, _store(dst_base), name, dst_name=dst_name)
    click.echo(f"copied {src_base}#{name} -> {dst_base}#{dst_name or name} sha256={digest}")
