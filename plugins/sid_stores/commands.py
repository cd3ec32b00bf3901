"""``sid checkpoint copy SRC DST`` (same format, checksum-verified) and ``sid checkpoint convert SRC
DST`` (between the msgpack/gcs byte format and orbax, verified bitwise)."""

from __future__ import annotations

import click


def _store(uri: str, kind: str | None = None):
    """The store for `uri`: the named store `kind`, else `orbax` when `uri` holds orbax checkpoints,
    else the one serving the URI's scheme (from the plugins the running ``sid`` loaded)."""
    from sid_stores.orbax_store import detect_local
    from sidcore.api import store_for

    registry = click.get_current_context().obj.plugins.registry
    if kind is None and detect_local(uri):
        kind = "orbax"
    if kind is None:
        return store_for(uri, registry)
    spec = registry.get("store", kind)
    return spec.build(spec.config(), uri=uri)


@click.group("checkpoint")
def checkpoint() -> None:
    """Checkpoint utilities (stores: local dir -> msgpack, gs://bucket/prefix -> gcs; a folder with
    orbax_<name>.json records -> orbax)."""


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
    from sidcore.api import read_msgpack_file
    from sidcore.api import local_path, pick_name, split_uri, uri_scheme
    from sidcore.api import resolve_checkpoint as resolve

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
    same_kind = "orbax" if getattr(source, "sharded", False) else None  # orbax copies stay orbax
    digest = copy_checkpoint(source, _store(dst_base, same_kind), name, dst_name=dst_name)
    click.echo(f"copied {src_base}#{name} -> {dst_base}#{dst_name or name} sha256={digest}")


@checkpoint.command("convert")
@click.argument("src")
@click.argument("dst")
@click.option("--to-store", type=click.Choice(["orbax", "msgpack", "gcs"]), default=None,
              help="Store (format) to write DST with [default: msgpack when SRC is orbax (gcs for gs://), "
                   "else orbax].")
def convert(src: str, dst: str, to_store: str | None) -> None:
    """Convert SRC[#NAME] into another store format at DST[#NAME] (default name: best if present,
    else last), e.g. a msgpack run dir into orbax or back. The whole tree and meta are copied;
    DST is re-read and must equal SRC bitwise."""
    from sid_stores.copy import copy_checkpoint
    from sidcore.api import CheckpointError
    from sidcore.api import uri_scheme
    from sidcore.api import pick_name, split_uri
    from sidcore.api import resolve_checkpoint as resolve

    src_base, name, bare = resolve(src)
    if bare is not None:
        raise CheckpointError(f"{bare}: convert reads a store or run dir (use 'sid checkpoint copy' for files)")
    dst_base, dst_name = split_uri(dst)
    source = _store(src_base)
    if to_store is None:
        remote = uri_scheme(dst_base) == "gs"
        to_store = ("gcs" if remote else "msgpack") if getattr(source, "sharded", False) else "orbax"
    name = pick_name(source, src_base, name)
    target = _store(dst_base, to_store)
    digest = copy_checkpoint(source, target, name, dst_name=dst_name)
    click.echo(f"converted {src_base}#{name} -> {dst_base}#{dst_name or name} ({to_store}) "
               f"tree sha256={digest}")
