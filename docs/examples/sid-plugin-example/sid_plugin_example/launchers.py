"""The example's launcher ``nice_local``: the run in one child process at a lower CPU priority
(``nice -n N python -m sidcore.cli run ... --launcher local``), for a shared workstation.

A launcher only *plans*: it returns the argv to run and the kernel's executor runs it (or prints it
for ``sid run --dry-run``). It never starts a process itself.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping

import attrs

from sidcore.api import LaunchPlan, LaunchStep
from sid_plugin_example.config import NiceLocalConfig


@attrs.frozen
class NiceLocal:
    cfg: NiceLocalConfig

    def plan(self, request: Mapping[str, Any]) -> LaunchPlan:
        argv = [str(a) for a in request.get("argv", ())]
        step = LaunchStep(argv=("nice", "-n", str(self.cfg.niceness), sys.executable, "-m", "sidcore.cli", "run",
                                *argv, "--launcher", "local"),
                          description=f"sid run at nice {self.cfg.niceness}")
        return LaunchPlan(steps=(step,))


def build(cfg: NiceLocalConfig) -> NiceLocal:
    return NiceLocal(cfg)
