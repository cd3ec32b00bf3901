"""RL runs (`sid run --run-mode rl`) across processes and crashes, through the real CLI on the tiny smoke
model: two processes (``local_multiprocess``, jax.distributed on CPU) give the one-process run's rewards,
losses and final weights; a run SIGKILLed inside a checkpoint write and rerun ends bitwise-equal to an
uninterrupted one, with every step logged once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
RL = str(ROOT / "configs" / "smoke" / "tiny_rl.yaml")
pytestmark = pytest.mark.slow
# The random tiny model never hits a target, so upstream's rewards would be all zero (no gradient, nothing
# to compare): ranking's no_hit=penalty keeps the rank penalties, so every step moves the weights.
REWARDS = "rl.rewards=[{name: rule}, {name: ranking, options: {no_hit: penalty}}]"


def sid(*args, env=None):
    full = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sidcore.cli", "run", "--config", RL, REWARDS, *args],
                          capture_output=True, text=True, env=full, timeout=900, cwd=ROOT)


def rl_records(run: Path) -> list[dict]:
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in recs if "rl/loss" in r]


def last_params(run: Path) -> dict:
    from flax import serialization

    return serialization.msgpack_restore((run / "sft_state_last.msgpack").read_bytes())["params"]


def test_two_processes_match_one(tmp_path):
    common = ["rl.max_steps=3", "jax.mesh_shape=2,1,1"]  # 2 prompts per step: one per data replica
    one = sid(*common, "--output-dir", str(tmp_path / "one"),
              env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert one.returncode == 0, one.stderr[-3000:]
    two = sid(*common, "--launcher", "local_multiprocess", "--output-dir", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    ra, rb = rl_records(tmp_path / "one"), rl_records(tmp_path / "two")
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == [1, 2, 3]
    assert all(r["rl/grad_norm"] > 0.1 and r["rl/zero_adv_frac"] == 0.0 for r in ra)  # the weights move
    assert ra[-1]["rl/kl_mean"] > 1e-4
    for key in ("rl/reward_mean", "rl/reward_std", "rl/hit@1", "rl/distinct_top1"):
        assert [r[key] for r in ra] == [r[key] for r in rb], key  # same rollouts, same rewards
    for key, atol in (("rl/loss", 1e-7), ("rl/kl_mean", 1e-8), ("rl/grad_norm", 0.0)):
        np.testing.assert_allclose([r[key] for r in rb], [r[key] for r in ra], rtol=1e-5, atol=atol, err_msg=key)
    pa, pb = last_params(tmp_path / "one"), last_params(tmp_path / "two")
    assert set(pa) == set(pb)
    for k in pa:
        np.testing.assert_allclose(np.asarray(pb[k]), np.asarray(pa[k]), rtol=1e-5, atol=1e-6, err_msg=k)
    assert json.loads((tmp_path / "two" / "run_summary.json").read_text())["devices"]["processes"] == 2


COMMON = ("rl.max_steps=4", "rl.save_steps=1", "rl.save_total_limit=2")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    ref = tmp_path_factory.mktemp("rl_ref") / "ref"
    res = sid(*COMMON, "--output-dir", str(ref))
    assert res.returncode == 0, res.stderr[-3000:]
    return ref


@pytest.mark.parametrize("point", ["store.staged:3", "store.published:4"])
def test_sigkill_mid_rl_run_resumes_bitwise(uninterrupted, tmp_path, point):
    run = tmp_path / "killed"
    res = sid(*COMMON, "--output-dir", str(run), env={"SID_FAILPOINT": point})
    assert res.returncode == -9, (res.returncode, res.stderr[-2000:])
    assert not (run / "run_summary.json").exists()  # it died mid run
    res = sid(*COMMON, "--output-dir", str(run))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "rl: resumed from step" in res.stderr
    assert not list(run.glob(".*.tmp")), "temp files of the killed write are cleaned"
    a, b = last_params(uninterrupted), last_params(run)
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(np.asarray(b[k]), np.asarray(a[k]), err_msg=k)
    ra, rb = rl_records(uninterrupted), rl_records(run)
    assert all(r["rl/grad_norm"] > 0.1 for r in ra)  # every step moves the weights
    assert [r["step"] for r in rb] == [1, 2, 3, 4]  # no step logged twice after the resume
    assert [r["rl/loss"] for r in rb] == [r["rl/loss"] for r in ra]
    assert [r["rl/reward_mean"] for r in rb] == [r["rl/reward_mean"] for r in ra]
