"""`sid tpu ...` and the tpu_vm launcher against a fake `gcloud` that records argv and simulates VMs."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import sid_launchers
from sidcore.errors import ConfigError, LaunchError, UsageError
from sid_launchers import tpu_vm as tv
from sid_launchers.config import TpuVmConfig

FAKE = Path(__file__).resolve().parent / "bin" / "gcloud"
TPU = ["alpha", "compute", "tpus"]
VM = ["alpha", "compute", "tpus", "tpu-vm"]
WHERE = ["--project=my-proj-1", "--zone=us-east5-b"]
CONFIGS = ["configs/tpu/v6e-16/industrial_adamw.yaml", "configs/tpu/v6e-8/industrial_adamw.yaml",
           "configs/tpu/v6e-16/x.yaml", "configs/c.yaml"]
BASE = ["--tpu-name", "sid-t", "--project", "my-proj-1", "--zone", "us-east5-b"]


class FakeGcloud:
    def __init__(self, root: Path) -> None:
        self.log = root / "gcloud.jsonl"
        self.state_file = root / "gcloud_state.json"

    def set_state(self, **state) -> None:
        self.state_file.write_text(json.dumps(state))

    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def verbs(self) -> list[str]:
        return [" ".join(c[3:5]) for c in self.calls()]


@pytest.fixture
def gcloud(tmp_path, monkeypatch) -> FakeGcloud:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "gcloud"
    wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    fake = FakeGcloud(tmp_path)
    monkeypatch.setenv("FAKE_GCLOUD_LOG", str(fake.log))
    monkeypatch.setenv("FAKE_GCLOUD_STATE", str(fake.state_file))
    fake.set_state()
    monkeypatch.chdir(tmp_path)
    for rel in CONFIGS:  # `sid tpu` reads launcher settings and run_mode from the (local) run config
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("run_mode: train_eval\n")
    return fake


def sid(*args: str):
    group = click.Group("sid")
    sid_launchers.register_commands(cli=group)
    return CliRunner().invoke(group, list(args))


def ssh(worker: str, vm: str = "sid-t") -> list[str]:
    return [*VM, "ssh", f"root@{vm}", *WHERE, f"--worker={worker}", "--quiet"]


def command_of(call: list[str]) -> str:
    assert call[-1].startswith("--command=")
    return call[-1][len("--command="):]


# ---------------------------------------------------------------------------------------------
# create
# ---------------------------------------------------------------------------------------------


def test_create_spot(gcloud):
    res = sid("tpu", "create", *BASE)
    assert res.exit_code == 0, res.output
    assert gcloud.calls() == [[*VM, "create", "sid-t", *WHERE, "--accelerator-type=v6e-8",
                               "--version=v6e-ubuntu-2404", "--quiet", "--spot"]]


def test_create_on_demand_v4(gcloud):
    res = sid("tpu", "create", *BASE, "--on-demand", "--type", "v4-8")
    assert res.exit_code == 0, res.output
    assert gcloud.calls() == [[*VM, "create", "sid-t", *WHERE, "--accelerator-type=v4-8",
                               "--version=tpu-ubuntu2204-base", "--quiet"]]


def test_create_queued_flex_start_and_guaranteed(gcloud):
    res = sid("tpu", "create", "--tpu-name", "sid-q", "--zone", "us-central2-b",
              "--provisioning", "queued_flex_start")
    assert res.exit_code == 0, res.output
    res = sid("tpu", "create", "--tpu-name", "sid-g", "--zone", "us-central2-b",
              "--provisioning", "queued_guaranteed",
              "--set", "accelerator_type=v5litepod-8")
    assert res.exit_code == 0, res.output
    assert gcloud.calls() == [
        [*TPU, "queued-resources", "create", "sid-q", "--zone=us-central2-b", "--accelerator-type=v6e-8",
         "--runtime-version=v6e-ubuntu-2404", "--node-id=sid-q-node", "--provisioning-model=flex-start",
         "--max-run-duration=3600s", "--async"],
        [*TPU, "queued-resources", "create", "sid-g", "--zone=us-central2-b",
         "--accelerator-type=v5litepod-8",
         "--runtime-version=v2-alpha-tpuv5-lite", "--node-id=sid-g-node", "--guaranteed", "--async"],
    ]


def test_zone_fallback_on_capacity_error(gcloud):
    gcloud.set_state(capacity_errors=["us-east5-b", "us-east1-d"])
    res = sid("tpu", "create", *BASE, "--set", "zones_fallback=[us-east1-d, europe-west4-a]")
    assert res.exit_code == 0, res.output
    zones = [next(a for a in c if a.startswith("--zone=")) for c in gcloud.calls()]
    assert zones == ["--zone=us-east5-b", "--zone=us-east1-d", "--zone=europe-west4-a"]
    assert all(c[3:6] == ["tpu-vm", "create", "sid-t"] for c in gcloud.calls())
    assert "fallback zone europe-west4-a" in res.stderr
    assert gcloud.state()["vms"]["sid-t"]["zone"] == "europe-west4-a"


def test_no_fallback_on_other_errors_and_exhaustion(gcloud):
    gcloud.set_state(vms={"sid-t": {"zone": "us-east5-b", "states": ["READY"]}})
    res = sid("tpu", "create", *BASE, "--set", "zones_fallback=[us-east1-d]")
    assert isinstance(res.exception, LaunchError) and "ALREADY_EXISTS" in str(res.exception)
    assert len(gcloud.calls()) == 1
    gcloud.set_state(capacity_errors=["us-east5-b", "us-east1-d"])
    res = sid("tpu", "create", *BASE, "--set", "zones_fallback=[us-east1-d]")
    assert isinstance(res.exception, LaunchError) and "no capacity in any zone" in str(res.exception)


# ---------------------------------------------------------------------------------------------
# bootstrap, sync-env, run
# ---------------------------------------------------------------------------------------------

READY_VM = {"vms": {"sid-t": {"zone": "us-east5-b", "states": ["READY"]}}}


def test_bootstrap(gcloud):
    gcloud.set_state(**READY_VM)
    res = sid("tpu", "bootstrap", *BASE, "--set", "repo_url=https://github.com/acme/sid.git",
              "--set", "repo_ref=v1.2")
    assert res.exit_code == 0, res.output
    (call,) = gcloud.calls()
    assert call[:-1] == ssh("all")
    cmd = command_of(call)
    expected_in_order = [
        "python3.12 -m venv /root/venvs/sid",
        ". /root/venvs/sid/bin/activate",
        "python -m pip install -U 'jax[tpu]' -f "
        "https://storage.googleapis.com/jax-releases/libtpu_releases.html",
        "git clone https://github.com/acme/sid.git /root/sid",
        "git checkout v1.2",
        "python -m pip install -e '.[gcs]'",
    ]
    positions = [cmd.index(s) for s in expected_in_order]
    assert positions == sorted(positions)
    assert subprocess.run(["bash", "-n", "-c", cmd]).returncode == 0


def test_bootstrap_needs_repo_url(gcloud):
    res = sid("tpu", "bootstrap", *BASE)
    assert isinstance(res.exception, ConfigError) and "repo_url" in str(res.exception)
    assert gcloud.calls() == []


def test_sync_env_never_echoes_secrets(gcloud, tmp_path):
    gcloud.set_state(**READY_VM)
    (tmp_path / ".env").write_text("WANDB_API_KEY=very-secret-value\n")
    res = sid("tpu", "sync-env", *BASE)
    assert res.exit_code == 0, res.output
    assert gcloud.calls() == [
        [*VM, "scp", ".env", "root@sid-t:/root/.env", *WHERE, "--worker=all", "--quiet"],
        [*ssh("all"),
         "--command=chmod 600 /root/.env && test -f /root/.env && echo env_synced=1 host=$(hostname -s)"],
    ]
    assert "very-secret-value" not in res.stdout + res.stderr


def test_sync_env_missing_file(gcloud):
    res = sid("tpu", "sync-env", *BASE, "--set", "env_file=nope.env")
    assert res.exit_code != 0 and "nope.env: env file not found" in str(res.exception)


def test_run_on_all_workers_multihost(gcloud):
    gcloud.set_state(**READY_VM)
    res = sid("tpu", "run", *BASE, "--type", "v6e-16", "--config", "configs/tpu/v6e-16/industrial_adamw.yaml",
              "--run-mode", "train", "train.learning_rate=1e-4")
    assert res.exit_code == 0, res.output
    (call,) = gcloud.calls()
    assert call[:-1] == ssh("all")
    cmd = command_of(call)
    assert ("sid run --config configs/tpu/v6e-16/industrial_adamw.yaml --run-mode train "
            "train.learning_rate=1e-4 --launcher local") in cmd
    assert "REQUIRE_JAX_PROCESS_COUNT=4" in cmd and "REQUIRE_MULTIHOST" in cmd
    assert "stem=sid_industrial_adamw_train_" in cmd
    assert subprocess.run(["bash", "-n", "-c", cmd]).returncode == 0


def test_single_host_run_has_no_multihost_env():
    cfg = TpuVmConfig(tpu_name="sid-t", accelerator_type="v6e-8")
    cmd = tv.run_command(cfg, argv=["--config", "c.yaml"], tag="sid_c_train")
    assert "REQUIRE_JAX_PROCESS_COUNT" not in cmd and "REQUIRE_MULTIHOST" not in cmd
    types = ("v6e-8", "v6e-16", "v6e-32", "v4-8", "v4-32", "v5litepod-16")
    assert [tv.num_workers(TpuVmConfig(accelerator_type=t)) for t in types] == [1, 4, 8, 1, 4, 4]


def test_run_command_protocol_executes(tmp_path):
    """Run the generated remote script with bash: .log/.exit/.pid files and the _latest links."""
    work = tmp_path / "work"
    (work / "bin").mkdir(parents=True)
    fake_sid = work / "bin" / "sid"
    fake_sid.write_text("#!/bin/sh\necho \"args: $*\"\necho \"multi=$REQUIRE_JAX_PROCESS_COUNT\"\nexit 3\n")
    fake_sid.chmod(0o755)
    cfg = TpuVmConfig(tpu_name="sid-t", workdir=str(work), accelerator_type="v6e-16", bnb_stub=True)
    cmd = tv.run_command(cfg, argv=["--config", "configs/a b.yaml"], tag="sid_a_b_train")
    cmd = cmd.replace(". /root/venvs/sid/bin/activate", "true")
    env = {**os.environ, "PATH": f"{work / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "started host=" in out.stdout
    exit_file = work / "logs" / "sid_a_b_train_latest.exit"
    for _ in range(200):
        if exit_file.exists():
            break
        time.sleep(0.05)
    assert exit_file.read_text().strip() == "3"
    log = (work / "logs" / "sid_latest.log").read_text()
    assert "args: run --config configs/a b.yaml --launcher local" in log and "multi=4" in log
    assert (work / "logs" / "sid_latest.pid").read_text().strip().isdigit()
    host_links = [p.name for p in (work / "logs").iterdir() if p.is_symlink() and "_latest" in p.name]
    assert len(host_links) == 9  # {tag_host, tag, sid}_latest x {log, exit, pid}
    probe = subprocess.run(["bash", "-c", tv.exit_code_command(cfg, "sid_a_b_train")],
                           capture_output=True, text=True)
    assert tv.parse_exit_codes([probe.stdout]) == [3]
    probe = subprocess.run(["bash", "-c", tv.exit_code_command(cfg, "sid_other_train")],
                           capture_output=True, text=True)
    assert tv.parse_exit_codes([probe.stdout]) == [None]


# ---------------------------------------------------------------------------------------------
# status, logs, exit-code, stop, delete
# ---------------------------------------------------------------------------------------------


def test_status_states(gcloud):
    gcloud.set_state(vms={"sid-t": {"zone": "us-east5-b", "states": ["CREATING", "READY", "PREEMPTED"]}})
    outs = [sid("tpu", "status", *BASE).stdout.strip() for _ in range(4)]
    assert outs == ["CREATING", "READY", "PREEMPTED", "PREEMPTED"]
    assert gcloud.calls()[0] == [*VM, "describe", "sid-t", *WHERE, "--format=value(state)"]
    gcloud.set_state()
    assert sid("tpu", "status", *BASE).stdout.strip() == "NOT_FOUND"


def test_exit_code_collection(gcloud):
    gcloud.set_state(**READY_VM, exit_codes={"0": 0, "1": 0, "2": 1})
    res = sid("tpu", "exit-code", *BASE, "--type", "v6e-16", "--config", "configs/tpu/v6e-16/x.yaml",
              "--run-mode", "train")
    assert res.exit_code == 1
    assert res.stdout.splitlines() == ["worker 0: 0", "worker 1: 0", "worker 2: 1", "worker 3: missing"]
    assert "worker(s) 2, 3" in str(res.exception)
    calls = gcloud.calls()
    assert [c[:-1] for c in calls] == [ssh(str(w)) for w in range(4)]
    assert all("/root/sid/logs/sid_x_train_latest.exit" in command_of(c) for c in calls)
    gcloud.set_state(**READY_VM, exit_codes={"0": 0, "1": 0, "2": 0, "3": 0})
    res = sid("tpu", "exit-code", *BASE, "--type", "v6e-16")
    assert res.exit_code == 0 and res.stdout.count(": 0") == 4
    assert "/root/sid/logs/sid_latest.exit" in command_of(gcloud.calls()[-1])


def test_logs_and_stop(gcloud):
    gcloud.set_state(**READY_VM)
    res = sid("tpu", "logs", *BASE, "--worker", "2", "-n", "5")
    assert res.exit_code == 0 and res.stdout == "fake log line 1\nfake log line 2\n"
    assert gcloud.calls()[-1] == [*ssh("2"), "--command=tail -n 5 /root/sid/logs/sid_latest.log"]
    res = sid("tpu", "stop", *BASE)
    assert res.exit_code == 0
    assert gcloud.calls()[-1][:-1] == ssh("all") and "kill -TERM" in command_of(gcloud.calls()[-1])


def test_delete(gcloud):
    gcloud.set_state(**READY_VM)
    assert sid("tpu", "delete", *BASE).exit_code == 0
    assert sid("tpu", "delete", "--tpu-name", "sid-q", "--zone", "us-east5-b",
               "--set", "provisioning=queued_flex_start").exit_code == 0
    assert gcloud.calls() == [
        [*VM, "delete", "sid-t", *WHERE, "--quiet"],
        [*TPU, "queued-resources", "delete", "sid-q", "--zone=us-east5-b", "--quiet", "--force"],
    ]
    assert gcloud.state()["vms"] == {}


# ---------------------------------------------------------------------------------------------
# supervise
# ---------------------------------------------------------------------------------------------

SUPERVISE = ["tpu", "supervise", *BASE, "--config", "configs/tpu/v6e-8/industrial_adamw.yaml",
             "--run-mode", "train",
             "--poll-interval", "0", "--set", "repo_url=https://github.com/acme/sid.git"]


def test_supervise_recovers_from_preemption(gcloud, tmp_path):
    (tmp_path / ".env").write_text("WANDB_API_KEY=x\n")
    gcloud.set_state(vms={"sid-t": {"zone": "us-east5-b", "states": ["READY", "PREEMPTED"]}},
                     exit_codes={}, runs=[{"0": 0}])
    res = sid(*SUPERVISE)
    assert res.exit_code == 0, (res.output, res.exception)
    assert "after 1 restart(s)" in res.stdout
    assert gcloud.verbs() == [
        "tpu-vm describe", "tpu-vm ssh",        # READY, still running (no exit file)
        "tpu-vm describe",                      # PREEMPTED
        "tpu-vm delete", "tpu-vm create",
        "tpu-vm describe", "tpu-vm describe",   # CREATING, READY
        "tpu-vm ssh",                           # bootstrap
        "tpu-vm scp", "tpu-vm ssh",             # sync-env
        "tpu-vm ssh",                           # the same run again (resumes from its store)
        "tpu-vm describe", "tpu-vm ssh",        # READY, exit 0
    ]
    calls = gcloud.calls()
    assert calls[3] == [*VM, "delete", "sid-t", *WHERE, "--quiet"]
    assert calls[4] == [*VM, "create", "sid-t", *WHERE, "--accelerator-type=v6e-8",
                        "--version=v6e-ubuntu-2404",
                        "--quiet", "--spot"]
    assert "bootstrap_ok=1" in command_of(calls[7])
    run_cmd = command_of(calls[10])
    expected = "sid run --config configs/tpu/v6e-8/industrial_adamw.yaml --run-mode train --launcher local"
    assert expected in run_cmd
    assert "echo exit=missing" in command_of(calls[-1])


def test_supervise_launch_and_failure(gcloud):
    gcloud.set_state(runs=[{"0": 2}])
    res = sid(*SUPERVISE, "--launch")
    assert isinstance(res.exception, LaunchError) and "worker 0 exit 2" in str(res.exception)
    assert gcloud.verbs()[:2] == ["tpu-vm describe", "tpu-vm create"]
    assert "tpu-vm scp" not in gcloud.verbs()  # no .env here: sync skipped


def test_supervise_gives_up(gcloud):
    gcloud.set_state(vms={"sid-t": {"zone": "us-east5-b", "states": ["PREEMPTED"]}},
                     create_states=["PREEMPTED"])
    res = sid(*SUPERVISE, "--max-restarts", "1")
    assert isinstance(res.exception, LaunchError) and "gave up after 1 restart(s)" in str(res.exception)


# ---------------------------------------------------------------------------------------------
# dry run, validation, the launcher plan
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["create"], ["create", "--provisioning", "queued_guaranteed"],
    ["bootstrap", "--set", "repo_url=https://x.org/r"], ["sync-env"], ["run", "--config", "configs/c.yaml"],
    ["status"], ["logs"], ["exit-code"], ["stop"], ["delete"],
    ["supervise", "--config", "configs/c.yaml", "--launch", "--set", "repo_url=https://x.org/r"],
])
def test_dry_run_executes_nothing(gcloud, args, tmp_path):
    (tmp_path / ".env").write_text("K=v\n")  # sync-env checks its local file in a dry run too
    res = sid("tpu", args[0], *BASE, "--dry-run", *args[1:])
    assert res.exit_code == 0, (res.output, res.exception)
    assert "gcloud alpha compute tpus" in res.stderr
    assert not gcloud.log.exists()


@pytest.mark.parametrize("setting", [
    "tpu_name=x;rm -rf /", "zone=us east", "repo_ref=$(id)", "workdir=/root/../etc",
    "repo_url=https://x.org/r;id", "extras=[gcs,'a b']", "accelerator_type=v9-8",
])
def test_unsafe_values_rejected(gcloud, setting):
    res = sid("tpu", "run", "--config", "configs/c.yaml", "--set", "tpu_name=sid-t", "--set", setting)
    assert isinstance(res.exception, ConfigError), res.output
    assert not gcloud.log.exists()


def test_settings_from_run_config(gcloud, tmp_path):
    cfg = tmp_path / "configs" / "r.yaml"
    cfg.parent.mkdir(exist_ok=True)
    cfg.write_text("run_mode: eval\nlauncher:\n  name: tpu_vm\n  tpu_name: sid-cfg\n  zone: europe-west4-a\n"
                   "  accelerator_type: v4-8\n")
    res = sid("tpu", "run", "--config", "configs/r.yaml", "--zone", "us-east1-d")
    assert res.exit_code == 0 or "NOT_FOUND" in str(res.exception)
    (call,) = gcloud.calls()
    assert call[4:7] == ["ssh", "root@sid-cfg", "--zone=us-east1-d"]
    assert "--run-mode eval" in command_of(call) and "sid_r_eval" in command_of(call)


def test_launcher_plan_for_sid_run():
    launcher = tv.build_tpu_vm(TpuVmConfig(tpu_name="sid-t", project="my-proj-1", zone="us-east5-b"))
    request = {"argv": ["--config", "configs/x.yaml", "run_mode=train"], "config_path": "configs/x.yaml",
               "run_mode": "train", "output_dir": "runs/x"}
    plan = launcher.plan(request)
    assert not plan.parallel and not plan.in_process and len(plan.steps) == 1
    step = plan.steps[0]
    assert list(step.argv[:-1]) == ["gcloud", *ssh("all")]
    assert step.env == {"CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    assert "sid run --config configs/x.yaml run_mode=train --launcher local" in step.argv[-1]
    with pytest.raises(UsageError, match="relative to the repo root"):
        launcher.plan({**request, "config_path": "/abs/x.yaml"})


def test_exec_and_copy_plans():
    from sid_launchers import tpu_exec as tx

    cfg = TpuVmConfig(tpu_name="vm", zone="us-east5-b", project="my-project")
    step = tx.exec_step(cfg, "us-east5-b", "ls /root", worker="0")
    assert step.argv[-3:] == ("--worker=0", "--quiet", "--command=ls /root") and "root@vm" in step.argv
    inside = tx.exec_step(cfg, "us-east5-b", "sid plugins list", in_workdir=True).argv[-1]
    assert inside.startswith("--command=cd /root/sid && ") and inside.endswith("&& sid plugins list")
    up = tx.copy_step(cfg, "us-east5-b", "data/Amazon", ":/root/data", recurse=True).argv
    assert up[-8:] == ("scp", "data/Amazon", "root@vm:/root/data", "--project=my-project", "--zone=us-east5-b", "--worker=all",
                       "--quiet", "--recurse")
    down = tx.copy_step(cfg, "us-east5-b", ":/root/sid/runs/x", "runs/", worker="0", recurse=True).argv
    assert "root@vm:/root/sid/runs/x" in down and "--worker=0" in down
    for src, dst, kw in (("a", "b", {}), (":a", ":b", {"worker": "0"}), (":a", "b", {})):
        with pytest.raises(ConfigError):
            tx.copy_step(cfg, "us-east5-b", src, dst, **kw)
    with pytest.raises(ConfigError, match="empty command"):
        tx.exec_step(cfg, "us-east5-b", "  ")


def test_exec_copy_and_bootstrap_repo_url_dry_run(tmp_path, monkeypatch):
    from sidcore.cli import build_cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()  # the local source of the copy (checked in a dry run too)

    cli = build_cli()
    res = CliRunner().invoke(cli, ["tpu", "exec", "--dry-run", "--tpu-name", "vm", "--", "echo", "hi"])
    assert res.exit_code == 0 and "tpu-vm ssh root@vm" in res.output and "echo hi" in res.output
    res = CliRunner().invoke(cli, ["tpu", "copy", "--dry-run", "--tpu-name", "vm", "--recurse", "d", ":/r/d"])
    assert res.exit_code == 0 and "tpu-vm scp d root@vm:/r/d" in res.output
    res = CliRunner().invoke(cli, ["tpu", "bootstrap", "--dry-run", "--tpu-name", "vm"])
    assert res.exit_code != 0 and "--repo-url" in str(res.exception)
    res = CliRunner().invoke(cli, ["tpu", "bootstrap", "--dry-run", "--tpu-name", "vm",
                                   "--repo-url", "https://example.org/me/sid.git"])
    assert res.exit_code == 0 and "https://example.org/me/sid.git" in res.output
