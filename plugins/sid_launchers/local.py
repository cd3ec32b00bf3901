"""The ``local`` and ``local_multiprocess`` launchers, and where the bitsandbytes stub lives.

``local`` answers "run in this process". ``local_multiprocess`` replays the ``sid run`` command in
N child processes (``python -m sidcore.cli run ... --launcher local``) that find each other through
the ``SID_COORDINATOR_ADDRESS`` / ``SID_NUM_PROCESSES`` / ``SID_PROCESS_ID`` env contract, which
is exactly how the hosts of a multi-host TPU slice run the same program.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any, Mapping

import attrs

from sidcore.api import SidError
from sidcore.api import ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID, LaunchPlan, LaunchStep
from sid_launchers.config import LocalConfig, LocalMultiprocessConfig

LOCALHOST = "127.0.0.1"


def stubs_dir() -> Path:
    """Absolute ``stubs/`` folder of the source checkout (holds ``bitsandbytes/``).

    Raises:
        SidError: ``sid`` is not installed from a source checkout (the stub is never packaged).
    """
    import sidcore

    path = Path(sidcore.__file__).resolve().parents[1] / "stubs"
    if not (path / "bitsandbytes" / "__init__.py").is_file():
        raise SidError(
            f"bitsandbytes stub not found at {path}/bitsandbytes; it ships only with a source checkout "
            "(pip install -e <repo>), never in site-packages"
        )
    return path


def prepend_pythonpath(entry: str, current: str | None) -> str:
    """``entry`` in front of an existing ``PYTHONPATH`` value (no duplicate, no empty item)."""
    rest = [p for p in (current or "").split(os.pathsep) if p and p != entry]
    return os.pathsep.join([entry, *rest])


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port that is free right now on `host` (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@attrs.frozen
class LocalLauncher:
    """Runs the job in the calling process."""

    cfg: LocalConfig

    def plan(self, request: Mapping[str, Any]) -> LaunchPlan:
        return LaunchPlan(in_process=True)


@attrs.frozen
class LocalMultiprocessLauncher:
    """N local processes joined by ``jax.distributed`` on 127.0.0.1."""

    cfg: LocalMultiprocessConfig

    def plan(self, request: Mapping[str, Any]) -> LaunchPlan:
        """One parallel step per process; the children run the same ``sid run`` with ``local``."""
        cfg = self.cfg
        port = cfg.coordinator_port or free_port()
        argv = [str(a) for a in request.get("argv", ())]
        common: dict[str, str] = {
            ENV_COORDINATOR: f"{LOCALHOST}:{port}",
            ENV_NUM_PROCESSES: str(cfg.num_processes),
        }
        if cfg.devices_per_process is not None:
            common["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={cfg.devices_per_process}"
            common["JAX_PLATFORMS"] = "cpu"
        if cfg.bnb_stub:
            common["PYTHONPATH"] = prepend_pythonpath(str(stubs_dir()), os.environ.get("PYTHONPATH"))
        steps = tuple(
            LaunchStep(
                argv=(sys.executable, "-m", "sidcore.cli", "run", *argv, "--launcher", "local"),
                env={**common, ENV_PROCESS_ID: str(i)},
                description=f"process {i}/{cfg.num_processes}",
            )
            for i in range(cfg.num_processes)
        )
        return LaunchPlan(steps=steps, parallel=True)


def build_local(cfg: LocalConfig) -> LocalLauncher:
    """Factory of the ``local`` launcher."""
    return LocalLauncher(cfg)


def build_local_multiprocess(cfg: LocalMultiprocessConfig) -> LocalMultiprocessLauncher:
    """Factory of the ``local_multiprocess`` launcher."""
    return LocalMultiprocessLauncher(cfg)
