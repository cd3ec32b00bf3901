"""The kernel's plan executor and the jax.distributed env contract (sidcore.run.executor, sidcore.run.distributed)."""

from __future__ import annotations

import sys
import time
import types

import pytest

from sidcore.run import distributed, executor
from sidcore.errors import LaunchError
from sidcore.interfaces import LaunchPlan, LaunchStep

PY = sys.executable


def py(code: str, **kw) -> LaunchStep:
    return LaunchStep(argv=(PY, "-c", code), **kw)


def test_sequential_returns_output_in_order():
    plan = LaunchPlan(steps=(py("print('one')"), py("import sys; print('two', file=sys.stderr)")))
    res = executor.execute(plan, echo=None)
    assert [r.returncode for r in res] == [0, 0]
    assert res[0].stdout == "one\n" and res[1].stderr == "two\n"
    assert res[0].argv == (PY, "-c", "print('one')")


def test_sequential_stops_at_first_checked_failure(tmp_path):
    marker = tmp_path / "ran"
    plan = LaunchPlan(steps=(
        py("import sys; sys.exit(4)", check=False, description="tolerated"),
        py("import sys; print('boom', file=sys.stderr); sys.exit(3)", description="the bad one"),
        py(f"open({str(marker)!r}, 'w').close()"),
    ))
    with pytest.raises(LaunchError) as info:
        executor.execute(plan, echo=None)
    msg = str(info.value)
    assert "step 1 (the bad one) failed with exit code 3" in msg and "boom" in msg
    assert "\n" not in msg
    assert not marker.exists()


def test_step_env_is_passed_and_merged(monkeypatch):
    monkeypatch.setenv("SID_TEST_PARENT", "p")
    step = py("import os; print(os.environ['SID_TEST_PARENT'], os.environ['SID_TEST_CHILD'])",
              env={"SID_TEST_CHILD": "c"})
    assert executor.execute(LaunchPlan(steps=(step,)), echo=None)[0].stdout == "p c\n"


def test_missing_executable_is_a_launch_error():
    with pytest.raises(LaunchError, match="cannot start"):
        executor.execute(LaunchPlan(steps=(LaunchStep(argv=("/nonexistent/sid-xyz",)),)), echo=None)


def test_parallel_steps_run_concurrently(tmp_path):
    # Each step creates its own file, then waits for the other's: only concurrent execution finishes.
    code = (
        "import os, sys, time\n"
        "me, other = sys.argv[1], sys.argv[2]\n"
        "open(me, 'w').close()\n"
        "t = time.time()\n"
        "while not os.path.exists(other):\n"
        "    time.sleep(0.01)\n"
        "    if time.time() - t > 20: sys.exit(9)\n"
        "print('met', flush=True)\n"
    )
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    steps = (LaunchStep(argv=(PY, "-c", code, a, b)), LaunchStep(argv=(PY, "-c", code, b, a)))
    plan = LaunchPlan(steps=steps, parallel=True)
    lines: list[str] = []
    res = executor.execute(plan, echo=lines.append)
    assert [r.returncode for r in res] == [0, 0]
    assert "[0] met" in lines and "[1] met" in lines


def test_parallel_failure_terminates_the_others():
    plan = LaunchPlan(steps=(py("import time; time.sleep(60)"), py("import sys; sys.exit(5)")), parallel=True)
    t0 = time.monotonic()
    with pytest.raises(LaunchError, match=r"step 1 .* exit code 5"):
        executor.execute(plan, echo=None)
    assert time.monotonic() - t0 < 15


def test_dry_run_prints_and_runs_nothing(tmp_path):
    marker = tmp_path / "x"
    step = LaunchStep(argv=("touch", str(marker), "a b"), env={"WANDB_API_KEY": "s3cret", "MODE": "x y"},
                      description="touch it")
    lines: list[str] = []
    res = executor.execute(LaunchPlan(steps=(step,)), dry_run=True, echo=lines.append)
    assert not marker.exists()
    assert res[0].returncode == 0
    text = "\n".join(lines)
    assert f"touch {marker} 'a b'" in text
    assert "WANDB_API_KEY=***" in text and "s3cret" not in text
    assert "'MODE=x y'" in text


def test_secrets_masked_in_env_and_argv():
    step = LaunchStep(argv=("tool", "--hf_token=abc", "HF_TOKEN=abc", "plain=1"),
                      env={"HF_TOKEN": "abc", "MY_SECRET": "def", "GCS_KEY_FILE": "ghi", "PATH_X": "ok"})
    line = executor.format_step(step)
    assert "abc" not in line and "def" not in line and "ghi" not in line
    assert "PATH_X=ok" in line and "plain=1" in line
    assert executor.format_plan(LaunchPlan(in_process=True)).startswith("in-process")


def test_executed_secrets_not_echoed():
    lines: list[str] = []
    executor.execute(LaunchPlan(steps=(py("pass", env={"WANDB_API_KEY": "topsecret"}),)), echo=lines.append)
    assert lines and all("topsecret" not in line for line in lines)


# ---------------------------------------------------------------------------------------------
# jax.distributed contract
# ---------------------------------------------------------------------------------------------

CONTRACT = {"SID_COORDINATOR_ADDRESS": "127.0.0.1:1234", "SID_NUM_PROCESSES": "2", "SID_PROCESS_ID": "1"}


def test_distributed_env_parses_and_validates():
    assert distributed.distributed_env({}) is None
    assert distributed.distributed_env(CONTRACT) == ("127.0.0.1:1234", 2, 1)
    with pytest.raises(LaunchError, match="SID_PROCESS_ID missing"):
        distributed.distributed_env({k: v for k, v in CONTRACT.items() if k != "SID_PROCESS_ID"})
    with pytest.raises(LaunchError, match="not in"):
        distributed.distributed_env({**CONTRACT, "SID_PROCESS_ID": "2"})
    with pytest.raises(LaunchError, match="host:port"):
        distributed.distributed_env({**CONTRACT, "SID_COORDINATOR_ADDRESS": "localhost"})
    with pytest.raises(LaunchError, match="integers"):
        distributed.distributed_env({**CONTRACT, "SID_NUM_PROCESSES": "two"})


@pytest.fixture
def fake_jax(monkeypatch):
    calls: list[tuple] = []
    state = {"count": 1}
    dist = types.SimpleNamespace(
        initialize=lambda *a, **kw: calls.append((a, kw)), is_initialized=lambda: False)
    mod = types.SimpleNamespace(distributed=dist, process_count=lambda: state["count"])
    monkeypatch.setitem(sys.modules, "jax", mod)
    return calls, state


def test_initialize_with_contract(fake_jax):
    calls, state = fake_jax
    state["count"] = 2
    assert distributed.maybe_initialize_distributed("auto", CONTRACT) is True
    assert calls == [((), {"coordinator_address": "127.0.0.1:1234", "num_processes": 2, "process_id": 1})]


def test_no_initialize_without_request(fake_jax):
    calls, _ = fake_jax
    assert distributed.maybe_initialize_distributed("auto", {}) is False
    assert distributed.maybe_initialize_distributed("off", CONTRACT) is False
    assert calls == []


def test_require_multihost_guards(fake_jax):
    calls, state = fake_jax
    with pytest.raises(LaunchError, match="REQUIRE_MULTIHOST"):
        distributed.maybe_initialize_distributed("auto", {"REQUIRE_MULTIHOST": "true"})
    assert calls == [((), {})]  # auto-detection (TPU slice), no explicit coordinator
    state["count"] = 4
    assert distributed.maybe_initialize_distributed("auto", {"REQUIRE_JAX_PROCESS_COUNT": "4"})
    with pytest.raises(LaunchError, match="REQUIRE_JAX_PROCESS_COUNT=2 but jax.process_count\\(\\) == 4"):
        distributed.maybe_initialize_distributed("auto", {"REQUIRE_JAX_PROCESS_COUNT": "2"})
    assert distributed.maybe_initialize_distributed("auto", {"REQUIRE_JAX_PROCESS_COUNT": "0"}) is False
    assert distributed.maybe_initialize_distributed("on", {}) is True
