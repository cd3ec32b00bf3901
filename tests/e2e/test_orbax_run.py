"""`sid run --store orbax` across two `jax.distributed` processes on 8 fake CPU devices: a kill -9 inside
an asynchronous save, then a rerun, ends bitwise equal to an uninterrupted run; the checkpoint restores
in one process onto another mesh; a run over another store's checkpoints is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke" / "tiny.yaml")
pytestmark = pytest.mark.slow
COMMON = ["--config", SMOKE, "--run-mode", "train", "--store", "orbax", "--launcher", "local_multiprocess",
          "launcher.devices_per_process=4", "jax.mesh_shape=dp:2,fsdp:4", "train.per_device_train_batch_size=1",
          "train.max_steps=4", "train.save_steps=1", "train.save_total_limit=2"]


def sid(*args, env=None):
    full = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sidcore.cli", *args], capture_output=True, text=True,
                          env=full, timeout=900, cwd=ROOT)


def restore_last(run: Path, **kw):
    from sid_stores.orbax_store import OrbaxStore

    tree, meta = OrbaxStore(str(run)).restore("last", params_only=True, **kw)
    return tree["params"], meta


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("orbax") / "full"
    res = sid("run", *COMMON, "--output-dir", str(run))
    assert res.returncode == 0, res.stderr[-3000:]
    return run


def test_sigkill_inside_an_async_save_resumes_bitwise(uninterrupted, tmp_path):
    run = tmp_path / "cut"
    res = sid("run", *COMMON, "--output-dir", str(run), env={"SID_FAILPOINT": "orbax.started:3"})
    assert res.returncode != 0  # both processes killed themselves inside the step-3 save
    res = sid("run", *COMMON, "--output-dir", str(run))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed from" in res.stderr and "(step 2)" in res.stderr, res.stderr[-3000:]
    want, want_meta = restore_last(uninterrupted)
    got, got_meta = restore_last(run)
    assert want_meta["step"] == got_meta["step"] == 4
    assert set(want) == set(got)
    for k in want:
        np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]), err_msg=k)
    steps = [json.loads(x).get("step") for x in (run / "metrics.jsonl").read_text().splitlines()
             if "train/loss" in json.loads(x)]
    assert steps == [1, 2, 3, 4]  # each step logged once


def test_checkpoint_restores_in_one_process_onto_another_mesh(uninterrupted):
    import jax

    host, _ = restore_last(uninterrupted)
    dev = jax.devices()[0]
    placed, _ = restore_last(uninterrupted, shardings={k: jax.sharding.SingleDeviceSharding(dev) for k in host})
    for k in host:
        assert isinstance(placed[k], jax.Array)
        np.testing.assert_array_equal(np.asarray(placed[k]), np.asarray(host[k]), err_msg=k)
    # the process-0 record names both processes' shards
    record = json.loads((uninterrupted / "orbax_last.json").read_text())
    assert record["process_count"] == 2


def test_a_run_over_another_stores_checkpoints_is_refused(uninterrupted, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(uninterrupted, copy)
    res = sid("run", "--config", SMOKE, "--run-mode", "train", "--output-dir", str(copy))  # default msgpack
    assert res.returncode == 1 and "holds orbax checkpoints" in res.stderr and "--store orbax" in res.stderr
    res = sid("run", "--config", SMOKE, "--run-mode", "train", "--output-dir", str(copy), "--dry-run")
    assert res.returncode == 1 and "holds orbax checkpoints" in res.stderr
