"""The SOP "train on one VM, hand the checkpoint off through GCS, evaluate on another" against the
GCS emulator: `sid run` writing to gs://, `sid checkpoint copy` gs -> gs and gs -> local, and an
eval-only run reading `gs://...#name`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke" / "tiny.yaml")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def emulator():
    from gcp_storage_emulator.server import create_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="sid-test")
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def sid(emulator, *args):
    env = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu", "STORAGE_EMULATOR_HOST": emulator}
    return subprocess.run([sys.executable, "-m", "sidcore.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=ROOT)


def test_train_to_gcs_copy_and_eval_from_gcs(emulator, tmp_path):
    train = sid(emulator, "run", "--config", SMOKE, "--store", "gcs", "--output-dir", str(tmp_path / "train"),
                "checkpoint_uri=gs://sid-test/runs/a", "train.save_best=false")
    assert train.returncode == 0, train.stderr[-3000:]
    assert not (tmp_path / "train" / "sft_state_last.msgpack").exists()  # checkpoints went to GCS
    copy = sid(emulator, "checkpoint", "copy", "gs://sid-test/runs/a#last", "gs://sid-test/handoff/a#best")
    assert copy.returncode == 0 and "sha256=" in copy.stdout, copy.stderr
    local = sid(emulator, "checkpoint", "copy", "gs://sid-test/handoff/a", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    assert (tmp_path / "local" / "sft_state_best.msgpack").exists()
    ev = sid(emulator, "run", "--config", SMOKE, "--run-mode", "eval", "--output-dir", str(tmp_path / "eval"),
             "train.resume_from_checkpoint=gs://sid-test/handoff/a#best")
    assert ev.returncode == 0, ev.stderr[-3000:]
    a = json.loads((tmp_path / "train" / "eval_predictions.json").read_text())
    b = json.loads((tmp_path / "eval" / "eval_predictions.json").read_text())
    assert [r["predict"] for r in a] == [r["predict"] for r in b]
    missing = sid(emulator, "checkpoint", "copy", "gs://no-such-bucket/x#last", str(tmp_path / "y"))
    assert missing.returncode == 1 and "bucket not found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
