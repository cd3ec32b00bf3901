"""Every built-in launcher passes the launcher conformance suite (`sidcore.testing.launchers`), and
the suite itself fails a launcher that breaks the contract."""

from __future__ import annotations

import subprocess

import pytest

from sidcore.interfaces import ENV_COORDINATOR, LaunchPlan, LaunchStep
from sidcore.plugins import load_plugins
from sidcore.testing.launchers import check_launcher


def _build(name, **options):
    spec = load_plugins().registry.get("launcher", name)
    return lambda: spec.build(spec.config(**options))


def test_local_runs_in_process():
    plan = check_launcher(_build("local"))
    assert plan.in_process and not plan.steps


def test_local_multiprocess_replays_the_run_in_each_process():
    plan = check_launcher(_build("local_multiprocess", num_processes=2), volatile_env=(ENV_COORDINATOR,))
    assert plan.parallel and len(plan.steps) == 2


def test_tpu_vm_plans_gcloud_calls_only(tmp_path):
    plan = check_launcher(_build("tpu_vm", tpu_name="my-tpu", zone="us-east5-b"), workdir=tmp_path)
    assert plan.steps and plan.steps[0].argv[0].endswith("gcloud")


class _Spawns:
    def plan(self, request):
        subprocess.Popen(["true"])
        return LaunchPlan(in_process=True)


class _DropsArgs:
    def plan(self, request):
        return LaunchPlan(steps=(LaunchStep(argv=("python", "-m", "sidcore.cli", "run", "--config", "x.yaml")),))


class _Recurses:
    def plan(self, request):
        return LaunchPlan(steps=(LaunchStep(argv=("sid", "run", *request["argv"], "--launcher", "tpu_vm")),))


@pytest.mark.parametrize("bad, message", [
    (_Spawns, "started a process"),
    (_DropsArgs, "replays the request's argv"),
    (_Recurses, "recursion"),
])
def test_the_suite_fails_launchers_that_break_the_contract(bad, message):
    with pytest.raises(AssertionError, match=message):
        check_launcher(bad)

