"""Options of the built-in checkpoint stores (attrs only, so listing plugins stays light)."""

from __future__ import annotations

import attrs
from attrs import validators as v


@attrs.frozen(kw_only=True)
class MsgpackConfig:
    """Options of the local `msgpack` store (the directory is the store URI)."""

    fsync: bool = attrs.field(
        default=True,
        metadata={"help": "fsync each file and its directory after writing (durability across power loss)."},
    )


@attrs.frozen(kw_only=True)
class GcsConfig:
    """Options of the `gcs` store (the URI is ``gs://bucket/prefix``)."""

    project: str | None = attrs.field(
        default=None,
        metadata={"help": "Google Cloud project of the client (default: from the credentials; "
                          "with STORAGE_EMULATOR_HOST: 'sid-emulator')."},
    )
    cache_dir: str | None = attrs.field(
        default=None,
        metadata={"help": "Local download cache (default: $XDG_CACHE_HOME/sid/gcs or ~/.cache/sid/gcs)."},
    )
    max_retries: int = attrs.field(
        default=5, validator=v.ge(0),
        metadata={"help": "Retries of a request after a transient error (5xx, 429, connection, checksum)."},
    )
    backoff_s: float = attrs.field(
        default=1.0, validator=v.ge(0),
        metadata={"help": "First retry delay in seconds; doubles after each retry."},
    )
    max_backoff_s: float = attrs.field(
        default=32.0, validator=v.ge(0), metadata={"help": "Upper bound of one retry delay in seconds."},
    )
    timeout_s: float = attrs.field(
        default=300.0, validator=v.gt(0), metadata={"help": "Timeout of one HTTP request in seconds."},
    )
    chunk_size_mb: int = attrs.field(
        default=64, validator=v.ge(0),
        metadata={"help": "Resumable upload/download chunk in MiB (0: one request per object)."},
    )


@attrs.frozen(kw_only=True)
class OrbaxConfig:
    """Options of the `orbax` store (sharded, asynchronous; the URI is a local directory or
    ``gs://bucket/prefix``). Selected by name (``store.name=orbax``), not by URI scheme."""

    async_save: bool = attrs.field(
        default=True,
        metadata={"help": "Return from save() once the arrays are copied to host memory; they are written "
                          "in the background and committed as soon as orbax has finalised (the next save() "
                          "and wait() wait for it). false: save() blocks until committed."},
    )
    use_ocdbt: bool = attrs.field(
        default=True,
        metadata={"help": "Orbax's OCDBT format: few large files per process instead of one folder per "
                          "array (faster on GCS, fewer objects)."},
    )
    save_timeout_s: int = attrs.field(
        default=1800, validator=v.gt(0),
        metadata={"help": "Seconds a background save may take (incl. the barriers between processes) "
                          "before it fails."},
    )
