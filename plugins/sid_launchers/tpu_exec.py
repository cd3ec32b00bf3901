"""``sid tpu exec`` / ``sid tpu copy``: a shell command on the workers and scp to/from them, as
`LaunchStep`s the kernel's executor runs (``--dry-run`` prints them)."""

from __future__ import annotations

from sidcore.api import ConfigError
from sidcore.api import LaunchStep
from sid_launchers.config import TpuVmConfig
from sid_launchers.tpu_vm import _activate, _gcloud, _where, q, ssh_step, vm_name


def exec_step(cfg: TpuVmConfig, zone: str, command: str, *, worker: str = "all", in_workdir: bool = False) -> LaunchStep:
    """``sid tpu exec``: any shell command on the workers (optionally inside the checkout, env active)."""
    if not command.strip():
        raise ConfigError("sid tpu exec: empty command")
    if in_workdir:
        command = f"cd {q(cfg.workdir)} && {_activate(cfg)} && {command}"
    return ssh_step(cfg, zone, command, worker=worker, description=f"exec on worker {worker}")


def remote_path(cfg: TpuVmConfig, path: str) -> tuple[str, bool]:
    """``:PATH`` (a path on the VM) -> ``root@VM:PATH``; anything else is local."""
    if path.startswith(":"):
        return f"root@{vm_name(cfg)}:{path[1:]}", True
    return path, False


def copy_step(cfg: TpuVmConfig, zone: str, src: str, dst: str, *, worker: str = "all",
              recurse: bool = False) -> LaunchStep:
    """``sid tpu copy``: ``gcloud ... tpu-vm scp`` between this machine and the workers; the VM side
    is written ``:PATH`` (``sid tpu copy data/ :/root/data --recurse``)."""
    (s, s_remote), (d, d_remote) = remote_path(cfg, src), remote_path(cfg, dst)
    if s_remote == d_remote:
        raise ConfigError(f"sid tpu copy {src} {dst}: exactly one side must be on the VM, written :PATH")
    if s_remote and worker == "all":
        raise ConfigError(f"sid tpu copy {src} {dst}: copying from the VM needs one worker (--worker 0)")
    argv = ["tpu-vm", "scp", s, d, *_where(cfg, zone), f"--worker={worker}", "--quiet",
            *(["--recurse"] if recurse else [])]
    way = "to" if d_remote else "from"
    return _gcloud(argv, f"copy {src} -> {dst} ({way} worker {worker})")
