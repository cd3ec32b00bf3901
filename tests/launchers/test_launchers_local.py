"""`local` and `local_multiprocess` launcher plans (the 2-process end-to-end run is tested elsewhere)."""

from __future__ import annotations

import sys

import pytest

from sidcore.config import loading
from sidcore.errors import ConfigError
from sidcore.plugins import load_plugins
from sid_launchers.config import LocalConfig, LocalMultiprocessConfig
from sid_launchers.local import prepend_pythonpath, stubs_dir

REQUEST = {"argv": ["--config", "configs/smoke/tiny.yaml", "run_mode=train_eval"],
           "config_path": "configs/smoke/tiny.yaml", "run_mode": "train_eval", "output_dir": "runs/x"}


def build(name: str, cfg):
    return load_plugins().registry.get("launcher", name).build(cfg)


def test_local_runs_in_process():
    plan = build("local", LocalConfig()).plan(REQUEST)
    assert plan.in_process and plan.steps == ()


def test_local_multiprocess_plan_snapshot():
    cfg = LocalMultiprocessConfig(num_processes=2, coordinator_port=23456, devices_per_process=4)
    plan = build("local_multiprocess", cfg).plan(REQUEST)
    assert plan.parallel and not plan.in_process
    assert [(s.argv, dict(s.env)) for s in plan.steps] == [
        ((sys.executable, "-m", "sidcore.cli", "run", "--config", "configs/smoke/tiny.yaml",
          "run_mode=train_eval",
          "--launcher", "local"),
         {"SID_COORDINATOR_ADDRESS": "127.0.0.1:23456", "SID_NUM_PROCESSES": "2", "SID_PROCESS_ID": str(i),
          "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"})
        for i in range(2)
    ]
    assert all(s.check for s in plan.steps)


def test_free_port_is_chosen_once_per_plan():
    plan = build("local_multiprocess", LocalMultiprocessConfig(num_processes=3)).plan(REQUEST)
    addrs = {s.env["SID_COORDINATOR_ADDRESS"] for s in plan.steps}
    assert len(addrs) == 1
    host, port = addrs.pop().split(":")
    assert host == "127.0.0.1" and 0 < int(port) < 65536
    assert [s.env["SID_PROCESS_ID"] for s in plan.steps] == ["0", "1", "2"]
    assert all("XLA_FLAGS" not in s.env and "JAX_PLATFORMS" not in s.env for s in plan.steps)


def test_bnb_stub_prepends_pythonpath(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    cfg = LocalMultiprocessConfig(bnb_stub=True, coordinator_port=1)
    plan = build("local_multiprocess", cfg).plan(REQUEST)
    assert plan.steps[0].env["PYTHONPATH"] == f"{stubs_dir()}:/somewhere"
    assert prepend_pythonpath("/a", "/a:/b::") == "/a:/b"


def test_config_validation_through_loader():
    raw = {"num_processes": 4, "devices_per_process": 2}
    cfg = loading.structure(LocalMultiprocessConfig, raw, "launcher")
    assert cfg.num_processes == 4 and cfg.devices_per_process == 2
    with pytest.raises(ConfigError, match="num_processes"):
        loading.structure(LocalMultiprocessConfig, {"num_processes": 0}, "launcher")
    with pytest.raises(ConfigError, match="nproc"):
        loading.structure(LocalMultiprocessConfig, {"nprocs": 2}, "launcher")
