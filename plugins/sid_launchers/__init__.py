"""Built-in launchers and their commands.

Components (kind ``launcher``): ``local`` (run in the ``sid run`` process), ``local_multiprocess``
(N processes on this machine joined by ``jax.distributed`` on 127.0.0.1) and ``tpu_vm`` (Cloud
TPU VMs through ``gcloud``). Commands: ``sid tpu create|bootstrap|sync-env|run|status|logs|
exit-code|stop|delete|supervise`` and ``sid stub-path`` (the bitsandbytes stub folder for
reference scripts). Launchers only return plans; the kernel's executor runs them.
"""

from __future__ import annotations

from sidcore import hookimpl
from sidcore.api import Register
from sid_launchers.config import LocalConfig, LocalMultiprocessConfig, TpuVmConfig


@hookimpl
def register_launchers(register: Register) -> None:
    register("local", "sid_launchers.local:build_local", config=LocalConfig,
             summary="Run the job in this process.")
    register("local_multiprocess", "sid_launchers.local:build_local_multiprocess",
             config=LocalMultiprocessConfig,
             summary="N local processes joined by jax.distributed (multi-host code path on one machine).")
    register("tpu_vm", "sid_launchers.tpu_vm:build_tpu_vm", config=TpuVmConfig,
             summary="Detached runs on all workers of a Cloud TPU VM (gcloud); see `sid tpu`.")


@hookimpl
def register_commands(cli):
    from sid_launchers.commands import add_commands

    add_commands(cli)
