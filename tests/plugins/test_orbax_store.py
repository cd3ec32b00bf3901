"""Tests of the `orbax` checkpoint store (`sid_stores.orbax_store`): the conformance suite, exact
round trips, params-only restore, atomic overwrite, orphan cleanup, and (in subprocesses, because
XLA_FLAGS must be set before jax is imported) sharded saves on 8 fake CPU devices, restore onto
another mesh, a 2-process `jax.distributed` save and kill -9 at every fault point."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import sid_stores
from sid_stores.config import OrbaxConfig
from sid_stores.orbax_store import OrbaxStore, build, is_orbax_dir

from sidcore.errors import CheckpointError
from sidcore.plugins import load_plugins
from sidcore.testing.stores import assert_trees_equal, check_store, sample_tree


def _store(root: Path, **kw) -> OrbaxStore:
    return OrbaxStore(str(root), OrbaxConfig(**kw))


def _folder(root: Path, name: str) -> Path:
    return root / json.loads((root / f"orbax_{name}.json").read_text())["folder"]


def kernel_tree(seed: int = 0) -> dict:
    """The kernel's layout: flat '/'-keyed params, a flax state dict of the optimizer, extra trees."""
    rng = np.random.default_rng(seed)
    w = {"model/embed/embedding": rng.standard_normal((16, 8)).astype(np.float32),
         "model/layers/0/attn/q/kernel": rng.standard_normal((8, 8)).astype(ml_dtypes.bfloat16),
         "model/norm/scale": np.ones((8,), np.float32)}
    nested = {"model": {"embed": {"embedding": w["model/embed/embedding"] * 0},
                        "layers": {0: {"attn": {"q": {"kernel": w["model/layers/0/attn/q/kernel"]}}}}}}
    return {"params": w,
            "opt_state": {"0": {"count": np.array(seed, np.int32), "mu": nested, "nu": nested},
                          "1": {}, "2": {"hyper": {"lr": np.float32(1e-3)}}},
            "ref_params": {"model/norm/scale": np.zeros((8,), np.float32)},
            "step": seed, "note": None}


@pytest.mark.parametrize("async_save", [True, False])
def test_orbax_conformance(tmp_path, async_save):
    root = tmp_path / "ckpt"

    def uncommit(store, name):
        (root / f"orbax_{name}.json").unlink()

    def corrupt(store, name):  # truncate every data file of the checkpoint in place
        for path in _folder(root, name).rglob("*"):
            if path.is_file() and path.parent.name == "d":
                path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    check_store(lambda: _store(root, async_save=async_save), uncommit=uncommit, corrupt=corrupt)


def test_registered_by_name_and_orbax_gs_scheme(tmp_path):
    registry = load_plugins(entry_points=False, extra=[("stores", sid_stores)]).registry
    spec = registry.get("store", "orbax")
    assert spec.schemes == ("orbax+gs",)
    assert registry.schemes() == {"file": "msgpack", "gs": "gcs", "orbax+gs": "orbax"}
    assert registry.store_for_uri("orbax+gs://b/run").name == "orbax"
    assert registry.store_for_uri("gs://b/run").name == "gcs"  # resolving gs:// never lists a bucket
    assert registry.store_for_uri(str(tmp_path)).name == "msgpack"  # an empty local folder: by scheme
    store = spec.build(spec.config(), uri="file:///tmp/x")
    assert isinstance(store, OrbaxStore) and store.sharded and store.root == Path("/tmp/x")
    with pytest.raises(CheckpointError, match="local directory or gs://"):
        build(OrbaxConfig(), uri="s3://b/x")
    import importlib.util

    if importlib.util.find_spec("gcsfs") is None:
        with pytest.raises(CheckpointError, match=r"needs gcsfs .*pip install 'sid\[gcs\]'"):
            build(OrbaxConfig(), uri="gs://b/x")
        assert not is_orbax_dir("gs://b/x")


def test_kernel_tree_roundtrip_params_only_and_detection(tmp_path):
    root = tmp_path / "run"
    assert not is_orbax_dir(root) and not is_orbax_dir(tmp_path)
    store = _store(root)
    tree = kernel_tree(3)
    store.save("step3", tree, {"step": 3, "cursor": {"epoch": 0, "offset": 96}})
    store.wait()
    assert is_orbax_dir(root) and is_orbax_dir(f"file://{root}")
    got, meta = _store(root).restore("step3")
    assert_trees_equal(got, tree)
    assert meta == {"step": 3, "cursor": {"epoch": 0, "offset": 96}}
    # int keys stay ints, numpy scalars stay numpy scalars, None and empty dicts survive
    assert 0 in got["opt_state"]["0"]["mu"]["model"]["layers"] and got["opt_state"]["1"] == {}
    assert isinstance(got["opt_state"]["2"]["hyper"]["lr"], np.float32)
    only, _ = _store(root).restore("step3", params_only=True)
    assert set(only) == {"params"}
    assert_trees_equal(only["params"], tree["params"])
    # the params item mirrors the module structure for orbax's own tools
    assert (_folder(root, "step3") / "params" / "_METADATA").is_file()


def test_overwrite_is_atomic_and_supersedes(tmp_path):
    root = tmp_path / "run"
    store = _store(root)
    store.save("last", sample_tree(0), {"step": 1})
    store.wait()
    first = _folder(root, "last")
    store.save("last", sample_tree(1), {"step": 2})
    store.wait()
    assert not first.exists(), "the superseded folder must be deleted after the commit"
    assert_trees_equal(_store(root).restore("last")[0], sample_tree(1))
    assert sorted(p.name for p in root.iterdir()) == sorted(["orbax_last.json", _folder(root, "last").name])


def test_orphans_removed_by_next_save_and_damage_reported(tmp_path):
    root = tmp_path / "run"
    store = _store(root)
    store.save("best", sample_tree(0), {})
    store.wait()
    (root / "orbax_last.deadbeef0001.orbax-checkpoint-tmp").mkdir()  # a killed save
    (root / "orbax_step9.0badf00d0001").mkdir()
    for mine in ("orbax_mine", "orbax_notes.d", "orbax_last.copy"):  # the user's, named alike: kept
        (root / mine).mkdir()
        (root / mine / "keep.txt").write_text("mine")
    again = _store(root)
    again.save("step1", sample_tree(0), {})
    again.wait()
    for mine in ("orbax_mine", "orbax_notes.d", "orbax_last.copy"):
        assert (root / mine / "keep.txt").read_text() == "mine"
        shutil.rmtree(root / mine)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(
        [_folder(root, "best").name, _folder(root, "step1").name])
    (root / "orbax_step7.json").write_text("{not json")
    shutil.rmtree(_folder(root, "step1"))
    bad = again.damaged()
    assert set(bad) == {"step7", "step1"} and "orbax_step7.json" in bad["step7"]
    assert "incomplete" in bad["step1"] and again.names() == ["best"]
    with pytest.raises(CheckpointError, match="orbax folder missing"):
        again.restore("step1")


def test_a_second_instance_spares_a_save_in_flight(tmp_path, caplog):
    """The first save of a new store instance cleans orphans, but not the folder another instance of
    the same process is still writing."""
    import threading

    root = tmp_path / "run"
    writer, release = _store(root), threading.Event()
    finish = writer._finish

    def held_finish(*args):  # the writer's commit waits until the other instance has saved
        release.wait(60)
        finish(*args)

    writer._finish = held_finish
    writer.save("last", sample_tree(1), {"step": 1})
    other = _store(root)
    with caplog.at_level(logging.INFO, logger="sid_stores.orbax_store"):
        other.save("best", sample_tree(0), {})
        other.wait()
    assert "removing orphaned" not in caplog.text, "the folder being written must not be cleaned"
    release.set()
    writer.wait()
    assert sorted(_store(root).names()) == ["best", "last"] and _store(root).damaged() == {}
    assert_trees_equal(_store(root).restore("last")[0], sample_tree(1))


def test_unsupported_trees_are_one_line_errors(tmp_path):
    store = _store(tmp_path / "run")
    with pytest.raises(CheckpointError, match="collides"):
        store.save("last", {"params": {"a/b": np.ones(2), "a": {"b": np.ones(2)}}}, {})
    with pytest.raises(CheckpointError, match="collides"):
        store.save("last", {"params": {"a.b": np.ones(2), "a/b": np.ones(2)}}, {})
    with pytest.raises(CheckpointError, match="not an array"):
        store.save("last", {"x": object()}, {})
    with pytest.raises(CheckpointError, match="JSON"):
        store.save("last", {"x": np.ones(2)}, {"bad": object()})
    with pytest.raises(CheckpointError, match="invalid checkpoint name"):
        store.save("a/b", {"x": np.ones(2)}, {})
    assert store.names() == []


# --- sharded saves on fake CPU devices (subprocesses) -------------------------------------------

WORKER = Path(__file__).with_name("orbax_worker.py")
REPO = Path(__file__).resolve().parents[2]


def _env(devices: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SID_FAILPOINT", "XLA_FLAGS")}
    path = os.pathsep.join([str(REPO), str(REPO / "plugins"), env.get("PYTHONPATH", "")])
    env.update(PYTHONPATH=path, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu", **extra)
    return env


def _worker(*args: str, devices: int = 8, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(WORKER), *args], check=False, env=_env(devices, **extra),
                          capture_output=True, text=True, timeout=300)


def _restored(root: Path, mesh: int) -> dict:
    proc = _worker("restore", str(root), str(mesh))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sharded_save_restores_onto_another_mesh(tmp_path):
    """8 devices, (2, 4) mesh -> restore on a 1-D mesh of 2 devices: bitwise equal, placed as asked."""
    root = tmp_path / "run"
    proc = _worker("save", str(root), "0,1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = _restored(root, 2)
    assert got["seed"] == 1, got
    assert got["shardings"]["model/embed/embedding"] == "P(None, 'x')"
    assert got["params_only"] == ["params"] and got["names"] == ["last"]
    assert len([p for p in root.iterdir() if p.is_dir()]) == 1, "the first save's folder must be gone"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_write_only_their_own_shards(tmp_path):
    """2 jax.distributed processes x 4 CPU devices: each writes its own OCDBT files holding about
    half of the sharded bytes; one process with 8 devices restores the same arrays."""
    root = tmp_path / "run"
    coord = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, str(WORKER), "save", str(root), "0,1", "--coordinator", coord,
                               "--nproc", "2", "--pid", str(i)], env=_env(4), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert sorted(json.loads(o.strip().splitlines()[-1])["process"] for o, _ in outs) == [0, 1]
    folder = _folder(root, "last")
    assert json.loads((root / "orbax_last.json").read_text())["process_count"] == 2
    for item in ("params", "state"):
        written = {i: sum(f.stat().st_size for f in (folder / item / f"ocdbt.process_{i}").rglob("*") if f.is_file())
                   for i in range(2)}
        total = sum(written.values())
        # the sharded arrays are ~80 KB; each process holds (and must write) half of every one
        assert total > 60_000, written
        assert all(0.35 * total < n < 0.65 * total for n in written.values()), (item, written)
    got = _restored(root, 8)
    assert got["seed"] == 1 and got["damaged"] == {}, got


@pytest.mark.slow
def test_one_process_save_restores_in_two_processes(tmp_path):
    """Saved by 1 process x 8 devices, restored by 2 jax.distributed processes x 4 devices onto a
    mesh spanning both: each process gets exactly its slices of the saved arrays."""
    root = tmp_path / "run"
    proc = _worker("save", str(root), "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    coord = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, str(WORKER), "restore", str(root), "8", "--coordinator", coord,
                               "--nproc", "2", "--pid", str(i)], env=_env(4), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    rows = sorted((json.loads(o.strip().splitlines()[-1]) for o, _ in outs), key=lambda r: r["process"])
    assert [(r["process"], r["seed"]) for r in rows] == [(0, 2), (1, 2)], rows
    assert rows[0]["shardings"]["model/layers/0/mlp/kernel"] == "P(None, 'x')"


@pytest.mark.slow
@pytest.mark.parametrize("point,survivor", [("orbax.started", 0), ("orbax.finalised", 0),
                                            ("orbax.committed", 1)])
def test_kill_during_async_save_keeps_a_checkpoint(tmp_path, point, survivor):
    """SIGKILL at each fault point of the second save of 'last': 'last' stays committed and restorable
    (the old state before the record is replaced, the new one after); the next save removes the
    folder the killed save left."""
    root = tmp_path / "run"
    proc = _worker("save", str(root), "0,1", SID_FAILPOINT=f"{point}:2")
    assert proc.returncode == -9, (proc.returncode, proc.stderr[-2000:])
    assert len([p for p in root.iterdir() if p.is_dir()]) == 2, "the killed save must have left a folder"
    got = _restored(root, 8)
    assert got["seed"] == survivor and got["names"] == ["last"] and got["damaged"] == {}, got
    store = _store(root)
    store.save("best", sample_tree(0), {})
    store.wait()
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(
        [_folder(root, "last").name, _folder(root, "best").name])


# --- sid checkpoint convert ---------------------------------------------------------------------


def test_convert_msgpack_orbax_roundtrip_is_bitwise(tmp_path):
    from click.testing import CliRunner
    from sid_stores.config import MsgpackConfig
    from sid_stores.msgpack_store import MsgpackStore

    from sidcore.cli import build_cli

    src, mid, back = tmp_path / "run", tmp_path / "orbax", tmp_path / "back"
    tree, meta = kernel_tree(2), {"step": 2, "cursor": {"offset": 64}, "best": {"ndcg@10": 0.5}}
    MsgpackStore(str(src), MsgpackConfig(fsync=False)).save("last", tree, meta)
    cli = build_cli()
    res = CliRunner().invoke(cli, ["checkpoint", "convert", str(src), str(mid)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "(orbax)" in res.output and is_orbax_dir(mid)
    got, got_meta = _store(mid).restore("last")
    assert_trees_equal(got, tree) and got_meta == meta
    # copy of an orbax checkpoint stays orbax; convert back defaults to msgpack
    res = CliRunner().invoke(cli, ["checkpoint", "copy", f"{mid}#last", f"{tmp_path / 'copy'}#step2"])
    assert res.exit_code == 0 and _store(tmp_path / "copy").names() == ["step2"], res.output
    res = CliRunner().invoke(cli, ["checkpoint", "convert", f"{mid}#last", f"{back}#last"])
    assert res.exit_code == 0 and "(msgpack)" in res.output, res.output + repr(res.exception)
    assert (back / "sft_state_last.msgpack").read_bytes() == (src / "sft_state_last.msgpack").read_bytes()
    assert MsgpackStore(str(back)).restore("last")[1] == meta
    bad = CliRunner().invoke(cli, ["checkpoint", "convert", f"{mid}#best", str(back)])
    assert bad.exit_code != 0 and "no checkpoint best" in str(bad.exception)


# --- gs:// against the local GCS emulator -------------------------------------------------------


@pytest.fixture
def gcs_for_orbax(monkeypatch):
    """The GCS emulator on 127.0.0.1, with both of orbax's GCS clients pointed at it: tensorstore (the
    array data) through TENSORSTORE_GCS_HTTP_URL + GOOGLE_AUTH_TOKEN_FOR_TESTING, etils.epath (folders,
    commit files, sid's records) through gcsfs, which reads STORAGE_EMULATOR_HOST."""
    pytest.importorskip("gcsfs", reason="orbax reaches gs:// folders through etils.epath, which needs gcsfs "
                                        "(pip install 'sid[gcs]'); tensorstore alone covers only the arrays")
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="sid-orbax")
    server.start()
    url = f"http://127.0.0.1:{port}"
    for var in ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL"):
        monkeypatch.setenv(var, url)
    monkeypatch.setenv("GOOGLE_AUTH_TOKEN_FOR_TESTING", "emulator")
    yield "gs://sid-orbax/runs/a"
    server.stop()


def test_gcs_emulator_roundtrip_overwrite_and_detection(gcs_for_orbax):
    from etils import epath

    uri = gcs_for_orbax
    store = build(OrbaxConfig(), uri=uri)
    store.save("last", kernel_tree(0), {"step": 1})
    store.wait()
    assert is_orbax_dir(uri) and store.names() == ["last"]
    store.save("last", kernel_tree(1), {"step": 2})
    store.wait()
    tree, meta = build(OrbaxConfig(), uri=uri).restore("last")
    assert_trees_equal(tree, kernel_tree(1)) and meta == {"step": 2}
    listing = sorted(p.name for p in epath.Path(uri).iterdir())
    assert len(listing) == 2 and "orbax_last.json" in listing, listing  # superseded folder deleted
    store.delete("last")
    assert store.names() == [] and not is_orbax_dir(uri)


def test_without_ocdbt_one_folder_per_array(tmp_path):
    root = tmp_path / "run"
    store = _store(root, use_ocdbt=False, async_save=False)
    store.save("best", kernel_tree(4), {"step": 4})
    folder = _folder(root, "best")
    assert not list(folder.rglob("ocdbt.process_*")) and (folder / "params" / "model.embed.embedding").is_dir()
    assert_trees_equal(_store(root).restore("best")[0], kernel_tree(4))
