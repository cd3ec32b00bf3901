"""The `gcs` store: checkpoints as objects ``gs://bucket/prefix/sft_state_<name>.msgpack`` + ``.meta.json``.

GCS writes one object atomically, so the commit protocol of `sid_stores._base` carries over:
the payload object is uploaded first (its md5 and size, and crc32c when ``google-crc32c`` is
installed, are checked against what the server stored), the record object last. Every request
goes through a bounded retry loop with exponential backoff on transient errors (429, 5xx,
connection errors, checksum mismatches); other errors become one-line `CheckpointError` s.
`restore` downloads payloads into a local cache directory (atomically) and re-uses a cached file
only when its sha256 matches the record. ``google-cloud-storage`` is imported only when a client
is created; with ``STORAGE_EMULATOR_HOST`` set, the client is anonymous (emulator / tests).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from sidcore.api import CheckpointError
from sid_stores._base import PAYLOAD_PREFIX, PayloadStore, md5_b64, payload_file, sha256_hex
from sid_stores.config import GcsConfig
from sid_stores.msgpack_store import atomic_write

log = logging.getLogger(__name__)

__all__ = ["GcsStore", "build", "parse_gs_uri"]

T = TypeVar("T")
EMULATOR_PROJECT = "sid-emulator"


class _ChecksumMismatch(Exception):
    """The server reports other bytes than we sent or received (retried like a transient error)."""


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b/`` -> ``("bucket", "a/b")``.

    Raises:
        CheckpointError: not a ``gs://bucket[/prefix]`` URI.
    """
    if not isinstance(uri, str) or not uri.startswith("gs://"):
        raise CheckpointError(f"store 'gcs' needs a gs://bucket/prefix URI, got {uri!r}")
    bucket, _, prefix = uri[len("gs://"):].partition("/")
    if not bucket:
        raise CheckpointError(f"{uri}: missing bucket name (expected gs://bucket/prefix)")
    return bucket, prefix.strip("/")


def _storage() -> Any:
    try:
        from google.cloud import storage
    except ImportError:
        raise CheckpointError("store 'gcs' needs google-cloud-storage: pip install 'sid[gcs]'") from None
    return storage


def make_client(cfg: GcsConfig, *, bucket: str) -> Any:
    """A `google.cloud.storage.Client`: anonymous under ``STORAGE_EMULATOR_HOST``, else default
    credentials.

    Raises:
        CheckpointError: no credentials, or google-cloud-storage is not installed.
    """
    storage = _storage()
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=cfg.project or EMULATOR_PROJECT, credentials=AnonymousCredentials())
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return storage.Client(project=cfg.project)
    except DefaultCredentialsError:
        raise CheckpointError(
            f"gs://{bucket}: no Google Cloud credentials (run `gcloud auth application-default login` "
            "or set GOOGLE_APPLICATION_CREDENTIALS)"
        ) from None


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sid" / "gcs"


def _transient_errors() -> tuple[type[BaseException], ...]:
    import requests
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import TransportError
    from google.cloud.storage.exceptions import DataCorruption

    return (
        gexc.TooManyRequests, gexc.InternalServerError, gexc.BadGateway, gexc.ServiceUnavailable,
        gexc.GatewayTimeout, requests.exceptions.ConnectionError,
        requests.exceptions.Timeout, TransportError, ConnectionError, TimeoutError, DataCorruption,
        _ChecksumMismatch,
    )


def _crc32c_b64(data: bytes) -> str | None:
    try:
        import google_crc32c
    except ImportError:
        return None
    import base64

    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode("ascii")


class GcsStore(PayloadStore):
    """Checkpoints under one ``gs://bucket/prefix``."""

    def __init__(self, uri: str, cfg: GcsConfig | None = None, *, client: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.uri = uri.rstrip("/")
        self.bucket_name, self.prefix = parse_gs_uri(uri)
        self.cfg = cfg or GcsConfig()
        self.cache_dir = Path(self.cfg.cache_dir).expanduser() if self.cfg.cache_dir else _default_cache_dir()
        self._client = client
        self._bucket: Any = None
        self._sleep = sleep

    # -- plumbing --------------------------------------------------------------------------
    def _object_name(self, filename: str) -> str:
        return f"{self.prefix}/{filename}" if self.prefix else filename

    def _where(self, filename: str) -> str:
        return f"gs://{self.bucket_name}/{self._object_name(filename)}"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one request with bounded exponential-backoff retries; map errors to `CheckpointError`."""
        from google.api_core import exceptions as gexc

        transient = _transient_errors()
        delay = self.cfg.backoff_s
        attempt = 0
        while True:
            try:
                return fn()
            except transient as exc:
                if attempt >= self.cfg.max_retries:
                    raise CheckpointError(
                        f"{what}: failed after {attempt + 1} attempts "
                        f"({type(exc).__name__}: {_first_line(exc)})"
                    ) from exc
                log.warning("%s: transient error (%s), retry %d/%d in %.1fs", what, type(exc).__name__,
                            attempt + 1, self.cfg.max_retries, min(delay, self.cfg.max_backoff_s))
                self._sleep(min(delay, self.cfg.max_backoff_s))
                delay *= 2
                attempt += 1
            except gexc.GoogleAPICallError as exc:
                raise CheckpointError(f"{what}: {type(exc).__name__}: {_first_line(exc)}") from exc

    def bucket(self) -> Any:
        """The bucket handle; checks once that the bucket exists."""
        if self._bucket is None:
            if self._client is None:
                self._client = make_client(self.cfg, bucket=self.bucket_name)
            bucket = self._client.bucket(self.bucket_name)
            exists = self._call(f"gs://{self.bucket_name}",
                                lambda: bucket.exists(timeout=self.cfg.timeout_s, retry=None))
            if not exists:
                raise CheckpointError(f"gs://{self.bucket_name}: bucket not found")
            self._bucket = bucket
        return self._bucket

    def _blob(self, filename: str) -> Any:
        blob = self.bucket().blob(self._object_name(filename))
        if self.cfg.chunk_size_mb:
            blob.chunk_size = self.cfg.chunk_size_mb * 1024 * 1024
        return blob

    # -- primitives ------------------------------------------------------------------------
    def _put(self, filename: str, data: bytes) -> None:
        where = self._where(filename)
        md5, crc = md5_b64(data), _crc32c_b64(data)

        def upload() -> None:
            blob = self._blob(filename)
            ctype = "application/json" if filename.endswith(".json") else "application/octet-stream"
            blob.upload_from_string(data, content_type=ctype, checksum="crc32c" if crc else "md5",
                                    timeout=self.cfg.timeout_s, retry=None)
            if blob.size is None or blob.md5_hash is None:
                blob.reload(timeout=self.cfg.timeout_s, retry=None)
            if blob.size != len(data) or blob.md5_hash != md5 or (crc and blob.crc32c and blob.crc32c != crc):
                raise _ChecksumMismatch(f"{where}: server checksum differs from the uploaded bytes")

        self._call(f"upload {where}", upload)

    def _get(self, filename: str) -> bytes | None:
        from google.api_core.exceptions import NotFound

        def download() -> bytes | None:
            try:
                return self._blob(filename).download_as_bytes(checksum="auto", timeout=self.cfg.timeout_s,
                                                              retry=None)
            except NotFound:
                return None

        return self._call(f"download {self._where(filename)}", download)

    def _remove(self, filename: str) -> None:
        from google.api_core.exceptions import NotFound

        def delete() -> None:
            try:
                self._blob(filename).delete(timeout=self.cfg.timeout_s, retry=None)
            except NotFound:
                pass

        self._call(f"delete {self._where(filename)}", delete)

    def _listing(self) -> dict[str, int]:
        bucket = self.bucket()
        start = self._object_name(PAYLOAD_PREFIX)
        cut = len(self._object_name(""))

        def listing() -> dict[str, int]:
            blobs = self._client.list_blobs(bucket, prefix=start, timeout=self.cfg.timeout_s, retry=None)
            return {b.name[cut:]: int(b.size or 0) for b in blobs if "/" not in b.name[cut:]}

        return self._call(f"list gs://{self.bucket_name}/{start}*", listing)

    def _fetch_payload(self, name: str, record: Mapping[str, Any]) -> bytes | None:
        """Serve the payload from the cache when its sha256 matches, else download it there."""
        filename = payload_file(name)
        cached = self.cache_dir / self.bucket_name / self._object_name(filename)
        if cached.is_file() and cached.stat().st_size == record["size"]:
            data = cached.read_bytes()
            if sha256_hex(data) == record["sha256"]:
                log.info("%s: using cached %s", self._where(filename), cached)
                return data
        data = self._get(filename)
        if data is not None:
            atomic_write(cached, data, fsync=False)
        return data


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


def build(cfg: GcsConfig, *, uri: str) -> GcsStore:
    """Factory of the `gcs` store; `uri` is ``gs://bucket/prefix``. No request is made here."""
    _storage()  # fail now, with the install hint, when the extra is missing
    return GcsStore(uri, cfg)
