"""Built-in checkpoint store components: `msgpack` (local directory, the default), `gcs`
(``gs://bucket/prefix``; needs the extra ``sid[gcs]`` = google-cloud-storage) and `orbax` (sharded,
asynchronous; local directory or ``orbax+gs://bucket/prefix``; selected by name, ``store.name=orbax``,
by its scheme ``orbax+gs``, or for a local folder by `sid_stores.orbax_store.detect_local`).

Both write ``sft_state_<name>.msgpack`` (reference-compatible flax msgpack) and then the commit
record ``sft_state_<name>.meta.json``. `sid_stores.copy.copy_checkpoint` copies between stores.
"""

from __future__ import annotations

from sidcore import hookimpl
from sidcore.api import Register
from sid_stores.config import GcsConfig, MsgpackConfig, OrbaxConfig


@hookimpl
def register_checkpoint_stores(register: Register) -> None:
    register("msgpack", "sid_stores.msgpack_store:build", config=MsgpackConfig, schemes=("file",),
             summary="Local directory of sft_state_<name>.msgpack files, written atomically.")
    register("gcs", "sid_stores.gcs:build", config=GcsConfig, schemes=("gs",),
             summary="gs://bucket/prefix via google-cloud-storage (checksummed, retried, cached).")
    register("orbax", "sid_stores.orbax_store:build", config=OrbaxConfig,
             schemes=("orbax+gs",), detect="sid_stores.orbax_store:detect_local",
             summary="Sharded async Orbax checkpoints (each process writes its shards; atomic commit record).")


@hookimpl
def register_commands(cli) -> None:
    from sid_stores.commands import checkpoint

    cli.add_command(checkpoint)
