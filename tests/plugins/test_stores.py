"""Tests of the checkpoint store plugin (`sid_stores`): local msgpack files and GCS via the real emulator."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from flax import serialization

import sid_stores
from sid_stores.config import GcsConfig, MsgpackConfig
from sid_stores.copy import copy_checkpoint
from sid_stores.gcs import GcsStore
from sid_stores.msgpack_store import MsgpackStore, read_msgpack_file
from sidcore.errors import CheckpointError
from sidcore.plugins import load_plugins
from sidcore.testing.stores import assert_trees_equal, check_store, sample_tree

BUCKET = "sid-test-bucket"


@pytest.fixture(scope="module")
def registry():
    return load_plugins(entry_points=False, extra=[("stores", sid_stores)]).registry


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- msgpack ----------------------------------------------------------------------------------


def test_msgpack_conformance(tmp_path):
    root = tmp_path / "run"

    def uncommit(store, name):
        (root / f"sft_state_{name}.meta.json").unlink()

    def corrupt(store, name):
        path = root / f"sft_state_{name}.msgpack"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    check_store(lambda: MsgpackStore(root, MsgpackConfig(fsync=False)), uncommit=uncommit, corrupt=corrupt)


def test_roundtrip_dtypes_and_keys(tmp_path):
    tree = {
        "step": 12,
        "params": {
            "w32": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),  # [3, 4]
            "wbf16": np.array([[1.5, -2.25, 3e-3], [7e4, 0.0, -0.0]], dtype=ml_dtypes.bfloat16),  # [2, 3]
            "i8": np.array([-128, 0, 127], np.int8),
            "layers": {0: {"k": np.ones(2, np.float32)}, 1: {"k": np.zeros(2, np.float32)}},  # int keys
        },
    }
    store = MsgpackStore(tmp_path)
    store.save("step12", tree, {"step": 12, "np_scalar": np.float32(0.5)})
    got, meta = store.restore("step12")
    assert_trees_equal(got, tree)  # flax msgpack keeps int dict keys as int (and str keys as str)
    assert list(got["params"]["layers"]) == [0, 1]
    assert got["params"]["wbf16"].dtype == ml_dtypes.bfloat16
    assert got["params"]["wbf16"].view(np.uint16).tolist() == tree["params"]["wbf16"].view(np.uint16).tolist()
    assert meta == {"step": 12, "np_scalar": 0.5}


def test_file_layout_is_reference_compatible(tmp_path):
    store = MsgpackStore(tmp_path)
    tree = {"step": 3, "params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    store.save("last", tree, {"step": 3})
    assert _files(tmp_path) == ["sft_state_last.meta.json", "sft_state_last.msgpack"]  # no temp files left
    payload = (tmp_path / "sft_state_last.msgpack").read_bytes()
    record = json.loads((tmp_path / "sft_state_last.meta.json").read_text())
    assert record["size"] == len(payload) and record["sha256"] == hashlib.sha256(payload).hexdigest()
    assert record["meta"] == {"step": 3} and record["format"] == "sid-checkpoint/1"
    # The payload is exactly flax's msgpack of the tree: reference tools read it as before.
    assert payload == serialization.msgpack_serialize(tree)
    assert_trees_equal(read_msgpack_file(tmp_path / "sft_state_last.msgpack"), tree)


def test_reference_port_file_without_meta(tmp_path):
    # A bare file as the reference port wrote it: {"step", "params"} and no record.
    tree = {"step": 100, "params": {"lm_head": np.ones((4, 2), ml_dtypes.bfloat16)}}
    (tmp_path / "sft_state_best.msgpack").write_bytes(serialization.msgpack_serialize(tree))
    store = MsgpackStore(tmp_path)
    assert store.names() == []
    with pytest.raises(CheckpointError, match="read_msgpack_file") as err:
        store.restore("best")
    assert "\n" not in str(err.value)
    assert_trees_equal(read_msgpack_file(tmp_path / "sft_state_best.msgpack"), tree)


def test_read_msgpack_file_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_msgpack_file(tmp_path / "missing.msgpack")
    (tmp_path / "junk.msgpack").write_bytes(b"\xc1\xc1 not msgpack")
    with pytest.raises(CheckpointError, match="not a readable msgpack checkpoint"):
        read_msgpack_file(tmp_path / "junk.msgpack")


def test_truncated_payload_is_invisible_and_refused(tmp_path):
    store = MsgpackStore(tmp_path)
    store.save("last", sample_tree(), {})
    path = tmp_path / "sft_state_last.msgpack"
    path.write_bytes(path.read_bytes()[:-10])
    assert store.names() == []  # payload size no longer matches the record
    with pytest.raises(CheckpointError, match="record says") as err:
        store.restore("last")
    assert str(err.value).startswith(str(path))


def test_corrupted_payload_same_size_fails_sha256(tmp_path):
    store = MsgpackStore(tmp_path)
    store.save("best", sample_tree(), {})
    path = tmp_path / "sft_state_best.msgpack"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        store.restore("best")


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    store = MsgpackStore(tmp_path)
    old = sample_tree(0)
    store.save("last", old, {"v": 1})

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(CheckpointError, match="No space left on device"):
        store.save("last", sample_tree(1), {"v": 2})
    monkeypatch.undo()
    assert _files(tmp_path) == ["sft_state_last.meta.json", "sft_state_last.msgpack"]  # temp file removed
    assert store.names() == ["last"]
    got, meta = store.restore("last")
    assert_trees_equal(got, old) and meta == {"v": 1}


def test_crash_before_commit_marker_hides_checkpoint(tmp_path, monkeypatch):
    store = MsgpackStore(tmp_path)
    store.save("step1", sample_tree(0), {})
    real_put = MsgpackStore._put

    def crash_on_record(self, filename, data):
        if filename.endswith(".meta.json"):
            raise KeyboardInterrupt  # killed between payload and record
        real_put(self, filename, data)

    monkeypatch.setattr(MsgpackStore, "_put", crash_on_record)
    with pytest.raises(KeyboardInterrupt):
        store.save("step2", sample_tree(1), {})
    monkeypatch.undo()
    assert (tmp_path / "sft_state_step2.msgpack").exists()
    assert store.names() == ["step1"]
    assert not [n for n in _files(tmp_path) if n.endswith(".tmp")]


def test_names_order_delete_and_bad_input(tmp_path):
    store = MsgpackStore(tmp_path)
    for name in ("step20", "last", "step3", "best"):
        store.save(name, {"x": np.zeros(1)}, {})
    assert store.names() == ["best", "last", "step3", "step20"]
    store.delete("step3")
    store.delete("step3")  # deleting a missing name is fine
    assert store.names() == ["best", "last", "step20"]
    with pytest.raises(CheckpointError, match="invalid checkpoint name"):
        store.save("Best-1", {"x": np.zeros(1)}, {})
    with pytest.raises(CheckpointError, match="not JSON-serializable"):
        store.save("last", {"x": np.zeros(1)}, {"bad": object()})
    with pytest.raises(CheckpointError, match="must be a dict"):
        store.save("last", [np.zeros(1)], {})
    assert store.restore("last")[0]["x"].shape == (1,)  # failed saves did not touch `last`


def test_registry_and_factories(registry, tmp_path):
    assert registry.names("store") == ["gcs", "msgpack", "orbax"]
    spec = registry.get("store", "msgpack")
    store = spec.build(spec.config(), uri=str(tmp_path / "ck"))
    assert isinstance(store, MsgpackStore) and store.uri == str(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="use store 'gcs'"):
        spec.build(spec.config(), uri="gs://b/p")
    gcs = registry.get("store", "gcs")
    assert isinstance(gcs.build(gcs.config(), uri="gs://b/p"), GcsStore)  # no request made yet
    with pytest.raises(CheckpointError, match="gs://bucket/prefix"):
        gcs.build(gcs.config(), uri=str(tmp_path))


def test_listing_plugins_imports_nothing_heavy():
    code = (
        "import sys, sid_stores, sid_metrics\n"
        "from sidcore.plugins import load_plugins\n"
        "p = load_plugins(entry_points=False, extra=[('stores', sid_stores), ('metrics', sid_metrics)])\n"
        "assert p.registry.names('store') and p.registry.names('metric')\n"
        "heavy = [m for m in ('jax', 'flax', 'numpy', 'google.cloud.storage') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- gcs (real google-cloud-storage client against gcp-storage-emulator) -----------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs_emulator():
    """The in-memory GCS emulator on 127.0.0.1 with bucket `BUCKET`; sets STORAGE_EMULATOR_HOST."""
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def gcs_uri(gcs_emulator):
    return f"gs://{BUCKET}/runs/{uuid.uuid4().hex[:8]}"


def _gcs(uri, tmp_path, **cfg):
    return GcsStore(uri, GcsConfig(cache_dir=str(tmp_path / "cache"), backoff_s=0.0, **cfg))


def test_gcs_conformance(gcs_uri, tmp_path):
    def uncommit(store, name):
        store.bucket().blob(f"{store.prefix}/sft_state_{name}.meta.json").delete()

    def corrupt(store, name):
        blob = store.bucket().blob(f"{store.prefix}/sft_state_{name}.msgpack")
        data = bytearray(blob.download_as_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.upload_from_string(bytes(data))

    check_store(lambda: _gcs(gcs_uri, tmp_path), uncommit=uncommit, corrupt=corrupt)


def test_gcs_objects_and_cache(gcs_uri, tmp_path):
    store = _gcs(gcs_uri, tmp_path)
    tree = sample_tree(3)
    store.save("best", tree, {"metric": "ndcg@10"})
    listing = store._listing()
    assert set(listing) == {"sft_state_best.msgpack", "sft_state_best.meta.json"}
    record = store.stat("best")
    assert record["md5"] == store.bucket().get_blob(f"{store.prefix}/sft_state_best.msgpack").md5_hash
    assert_trees_equal(store.restore("best")[0], tree)
    cached = tmp_path / "cache" / BUCKET / store.prefix / "sft_state_best.msgpack"
    assert cached.read_bytes() == serialization.msgpack_serialize(tree)
    cached.write_bytes(b"stale" + cached.read_bytes()[5:])  # a damaged cache is re-downloaded
    assert_trees_equal(store.restore("best")[0], tree)
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == record["sha256"]


def test_gcs_large_payload_resumable(gcs_uri, tmp_path):
    store = _gcs(gcs_uri, tmp_path, chunk_size_mb=1)
    n = 9 * 1024 * 1024 // 4  # 9 MiB of float32
    tree = {"w": np.random.default_rng(0).standard_normal((n,)).astype(np.float32)}
    store.save("last", tree, {})
    assert store.stat("last")["size"] > 8 * 1024 * 1024  # above the multipart limit: resumable upload
    assert_trees_equal(store.restore("last")[0], tree)


def test_gcs_missing_bucket(gcs_emulator, tmp_path, registry):
    spec = registry.get("store", "gcs")
    store = spec.build(GcsConfig(cache_dir=str(tmp_path)), uri="gs://no-such-bucket/x")
    with pytest.raises(CheckpointError) as err:
        store.names()
    assert str(err.value) == "gs://no-such-bucket: bucket not found"
    with pytest.raises(CheckpointError, match="^gs://no-such-bucket: bucket not found$"):
        store.save("last", {"x": np.zeros(1)}, {})


def test_gcs_retries_with_backoff(gcs_emulator, tmp_path):
    from google.api_core import exceptions as gexc

    delays: list[float] = []
    store = GcsStore(f"gs://{BUCKET}/r", GcsConfig(backoff_s=0.5, max_backoff_s=1.5, max_retries=3),
                     sleep=delays.append)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise gexc.ServiceUnavailable("try later")
        return "ok"

    assert store._call("op", flaky) == "ok"
    assert delays == [0.5, 1.0, 1.5]  # doubling, capped at max_backoff_s

    calls.clear()
    delays.clear()

    def always_down():
        calls.append(1)
        raise gexc.TooManyRequests("slow down")

    with pytest.raises(CheckpointError, match="op: failed after 4 attempts"):
        store._call("op", always_down)
    assert len(calls) == 4

    calls.clear()

    def forbidden():
        calls.append(1)
        raise gexc.Forbidden("no access")

    with pytest.raises(CheckpointError, match="op: Forbidden"):
        store._call("op", forbidden)
    assert len(calls) == 1  # permanent errors are not retried


# --- copy -------------------------------------------------------------------------------------


class DictStore:
    """A minimal third-party style store (protocol methods only) for the generic copy path."""

    def __init__(self):
        self.uri = "mem://x"
        self.data = {}

    def save(self, name, tree, meta):
        self.data[name] = (serialization.msgpack_serialize(tree), dict(meta))

    def restore(self, name):
        if name not in self.data:
            raise CheckpointError(f"mem://x: checkpoint '{name}' not found")
        raw, meta = self.data[name]
        return serialization.msgpack_restore(raw), dict(meta)

    def names(self):
        return sorted(self.data)

    def delete(self, name):
        self.data.pop(name, None)


def test_copy_local_gs_local(gcs_uri, tmp_path):
    src = MsgpackStore(tmp_path / "a")
    tree = sample_tree(5)
    src.save("best", tree, {"step": 9})
    gs = _gcs(gcs_uri, tmp_path)
    back = MsgpackStore(tmp_path / "b")
    digest = copy_checkpoint(src, gs, "best")
    assert copy_checkpoint(gs, back, "best", dst_name="last") == digest
    assert digest == src.stat("best")["sha256"] == gs.stat("best")["sha256"] == back.stat("last")["sha256"]
    got, meta = back.restore("last")
    assert_trees_equal(got, tree) and meta == {"step": 9}
    assert (tmp_path / "b" / "sft_state_last.msgpack").read_bytes() == (
        tmp_path / "a" / "sft_state_best.msgpack").read_bytes()


def test_copy_refuses_corrupt_source_and_supports_plain_stores(tmp_path):
    src = MsgpackStore(tmp_path / "a")
    src.save("last", sample_tree(), {"k": 1})
    mem = DictStore()
    digest = copy_checkpoint(src, mem, "last")  # generic restore/save/restore path
    assert digest == src.stat("last")["sha256"]
    assert_trees_equal(mem.restore("last")[0], sample_tree())
    path = tmp_path / "a" / "sft_state_last.msgpack"
    data = bytearray(path.read_bytes())
    data[7] ^= 0xFF
    path.write_bytes(bytes(data))
    dst = MsgpackStore(tmp_path / "b")
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        copy_checkpoint(src, dst, "last")
    assert dst.names() == []


def test_checkpoint_copy_dry_run_checks_a_local_source(tmp_path):
    from click.testing import CliRunner

    from sidcore.cli import build_cli

    store = MsgpackStore(str(tmp_path / "run"), MsgpackConfig())
    store.save("last", {"params": {"w": np.ones(2, np.float32)}}, {"step": 1})
    cli = build_cli()
    ok = CliRunner().invoke(cli, ["checkpoint", "copy", "--dry-run", str(tmp_path / "run"), str(tmp_path / "d")])
    assert ok.exit_code == 0 and f"{tmp_path / 'run'}#last ->" in ok.output
    for src, msg in ((tmp_path / "missing", "no such file or directory"), (f"{tmp_path / 'run'}#best", "no checkpoint best")):
        res = CliRunner().invoke(cli, ["checkpoint", "copy", "--dry-run", str(src), str(tmp_path / "d")])
        assert res.exit_code != 0 and msg in str(res.exception), res.output
    remote = CliRunner().invoke(cli, ["checkpoint", "copy", "--dry-run", "gs://b/x#best", "gs://b/y#best"])
    assert remote.exit_code == 0 and "remote source: existence checked when copying" in remote.output
