"""``profile.steps``: the trace window (which steps, which loop), a real `jax.profiler` trace on disk,
nothing without the key, and two real tiny runs (SFT steps, eval decode batches) that leave a trace
XProf/Perfetto can open in their run folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidcore.config.schema import ProfileConfig
from sidcore.train import profiling

ROOT = Path(__file__).resolve().parents[2]


def trace_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".xplane.pb", ".trace.json.gz")))


@pytest.fixture
def calls(monkeypatch):
    import jax

    seen: list[str] = []
    monkeypatch.setattr(jax.profiler, "start_trace", lambda folder, **kw: seen.append(f"start {Path(folder).name}"))
    monkeypatch.setattr(jax.profiler, "stop_trace", lambda: seen.append("stop"))
    return seen


def test_window_covers_start_to_stop_of_the_run_modes_loop(tmp_path, calls):
    with profiling.session(ProfileConfig(steps=[2, 3]), str(tmp_path), "train"):
        for i in range(1, 6):
            calls.append(f"step {i}")
            profiling.step("decode")  # another loop (a train_eval's decode batches): not counted
            profiling.step("train", i)
    assert calls == ["step 1", "step 2", "start profile", "step 3", "step 4", "stop", "step 5"]


def test_window_closes_when_the_run_ends_inside_it_and_counts_decode_batches(tmp_path, calls):
    with profiling.session(ProfileConfig(steps=[2, 9]), str(tmp_path), "eval"):
        for _ in range(3):
            profiling.step("decode")
        calls.append("end")
    assert calls == ["start profile", "end", "stop"]


def test_resumed_run_starts_inside_the_window_and_one_past_it_never_starts(tmp_path, calls):
    with profiling.session(ProfileConfig(steps=[2, 4]), str(tmp_path), "rl"):
        profiling.step("rl", 3)
    with profiling.session(ProfileConfig(steps=[2, 4]), str(tmp_path), "rl"):
        profiling.step("rl", 5)
    assert calls == ["start profile", "stop"]


def test_steps_must_be_a_window():
    for bad in ([1], [3, 2], [0, 1], [1, 2, 3]):
        with pytest.raises(ValueError, match="profile.steps"):
            ProfileConfig(steps=bad)


def test_real_trace_and_none_without_the_key(tmp_path):
    import jax
    import jax.numpy as jnp

    f = jax.jit(lambda x: (x @ x).sum())
    with profiling.session(ProfileConfig(), str(tmp_path / "off"), "train"):
        for i in (1, 2, 3):
            profiling.step("train", i)
            float(f(jnp.ones((64, 64))))
    assert not (tmp_path / "off").exists()
    with profiling.session(ProfileConfig(steps=[2, 2]), str(tmp_path / "on"), "train"):
        for i in (1, 2, 3):
            profiling.step("train", i)
            float(f(jnp.ones((64, 64))))
    files = trace_files(tmp_path / "on" / "profile")
    assert any(n.endswith(".xplane.pb") for n in files) and any(n.endswith(".trace.json.gz") for n in files)


def sid(*args):
    env = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "sidcore.cli", "run", "--config", "configs/smoke/tiny.yaml", *args],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("mode,extra", [("train", ["train.max_steps=3", "profile.steps=[2,3]"]),
                                        ("eval", ["eval.random_weights=true", "profile.steps=[1,1]"])])
def test_tiny_run_writes_a_trace_into_its_folder(tmp_path, mode, extra):
    out = tmp_path / "run"
    res = sid("--output-dir", str(out), f"run_mode={mode}", *extra)
    assert res.returncode == 0, res.stderr[-2000:]
    files = trace_files(out / "profile")
    assert any(n.endswith(".xplane.pb") for n in files) and any(n.endswith(".trace.json.gz") for n in files), files
    assert "profile:\n  steps:" in (out / "config.resolved.yaml").read_text()
