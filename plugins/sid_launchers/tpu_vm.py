"""The ``tpu_vm`` launcher: plans of ``gcloud alpha compute tpus`` argv lists for Cloud TPU VMs.

Everything here is pure: functions return `LaunchStep` / `LaunchPlan` values and the kernel's
executor (`sidcore.run.executor.execute`) runs them. Remote commands are necessarily shell strings
(``gcloud ... ssh --command=...``); they are built only from validated `TpuVmConfig` values and
``sid run`` arguments, every interpolated value passed through `shlex.quote`.

Detached runs follow the reference ``nohup`` protocol: on every worker
``logs/<tag>_<host>_<UTC>.{log,exit,pid}`` plus ``<tag>_<host>_latest.*``, ``<tag>_latest.*`` and
``sid_latest.*`` links, where ``<tag>`` is ``sid_<config stem>_<run mode>``; the ``.exit`` file is
written when the run ends, so "no exit file" means "still running".
"""

from __future__ import annotations

import re
import shlex
from pathlib import PurePosixPath
from typing import Any, Mapping, Sequence

import attrs

from sidcore.api import ConfigError, UsageError
from sidcore.api import LaunchPlan, LaunchStep
from sid_launchers.config import TpuVmConfig

TPUS = ("gcloud", "alpha", "compute", "tpus")
GCLOUD_ENV = {"CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
LIBTPU_INDEX = "https://storage.googleapis.com/jax-releases/libtpu_releases.html"
MINICONDA_URL = "https://repo.anaconda.com/miniconda/Miniconda3-latest-Linux-x86_64.sh"
REMOTE_ENV_FILE = "/root/.env"
CAPACITY_MARKERS = ("resource_exhausted", "no more capacity", "quota", "stockout", "insufficient capacity",
                    "out of capacity")
NOT_FOUND_MARKERS = ("not_found", "not found", "was not found")
EXIT_RE = re.compile(r"^exit=(\d+|missing)\s*$", re.MULTILINE)
_STEM_SAFE = re.compile(r"[^A-Za-z0-9._-]")
RUN_MODES = ("train", "eval", "train_eval", "rl")


# ------------------------------------------------------------------------------------------------
# derived settings
# ------------------------------------------------------------------------------------------------


def runtime_version(cfg: TpuVmConfig) -> str:
    """The TPU software version: explicit, or chosen from the accelerator family."""
    if cfg.runtime_version != "auto":
        return cfg.runtime_version
    family = cfg.accelerator_type.split("-")[0]
    return {
        "v6e": "v6e-ubuntu-2404",
        "v5litepod": "v2-alpha-tpuv5-lite",
        "v5p": "v2-alpha-tpuv5",
    }.get(family, "tpu-ubuntu2204-base")


def num_workers(cfg: TpuVmConfig) -> int:
    """Hosts in the slice: v6e/v5litepod 1 up to 8 chips, else 4 chips per host; v2-v5p 8 cores per host."""
    if cfg.num_workers:
        return cfg.num_workers
    family, size = cfg.accelerator_type.split("-")
    n = int(size)
    if family in ("v6e", "v5litepod"):
        return 1 if n <= 8 else n // 4
    return max(1, n // 8)


def is_queued(cfg: TpuVmConfig) -> bool:
    return cfg.provisioning.startswith("queued_")


def vm_name(cfg: TpuVmConfig) -> str:
    """Name of the TPU VM node (queued resources create ``<name>-node``)."""
    if not cfg.tpu_name:
        raise ConfigError("launcher.tpu_name: required (set it in the config or pass --tpu-name)")
    return f"{cfg.tpu_name}-node" if is_queued(cfg) else cfg.tpu_name


def zones(cfg: TpuVmConfig) -> list[str]:
    """Zones create tries, in order (primary first, duplicates dropped)."""
    return list(dict.fromkeys([cfg.zone, *cfg.zones_fallback]))


def is_capacity_error(stderr: str) -> bool:
    """True when a create failed for lack of capacity or quota (worth another zone)."""
    low = stderr.lower()
    return any(m in low for m in CAPACITY_MARKERS)


def is_not_found(stderr: str) -> bool:
    low = stderr.lower()
    return any(m in low for m in NOT_FOUND_MARKERS)


def run_tag(config_path: str, run_mode: str) -> str:
    """``sid_<config stem>_<run mode>``: the name stem of a run's log/exit/pid files."""
    if run_mode not in RUN_MODES:
        raise UsageError(f"run mode {run_mode!r}: expected one of {', '.join(RUN_MODES)}")
    stem = _STEM_SAFE.sub("_", PurePosixPath(str(config_path).replace("\\", "/")).stem) or "config"
    return f"sid_{stem}_{run_mode}"


def remote_config_path(config_path: str) -> str:
    """The config path as seen from the VM checkout: relative, inside the repo."""
    p = PurePosixPath(str(config_path).replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts:
        raise UsageError(
            f"--config {config_path}: TPU runs need a path relative to the repo root (the VM runs it "
            "inside its own checkout), e.g. configs/tpu/v6e-8/industrial_adamw.yaml"
        )
    return str(p)


# ------------------------------------------------------------------------------------------------
# gcloud argv
# ------------------------------------------------------------------------------------------------


def _where(cfg: TpuVmConfig, zone: str) -> list[str]:
    return ([f"--project={cfg.project}"] if cfg.project else []) + [f"--zone={zone}"]


def _gcloud(argv: Sequence[str], description: str, *, check: bool = True) -> LaunchStep:
    return LaunchStep(argv=(*TPUS, *argv), env=dict(GCLOUD_ENV), description=description, check=check)


def create_step(cfg: TpuVmConfig, zone: str) -> LaunchStep:
    """Create the VM (spot / on-demand) or the queued resource (flex-start / guaranteed) in `zone`."""
    version = runtime_version(cfg)
    if not is_queued(cfg):
        argv = ["tpu-vm", "create", vm_name(cfg), *_where(cfg, zone),
                f"--accelerator-type={cfg.accelerator_type}", f"--version={version}", "--quiet"]
        if cfg.provisioning == "spot":
            argv.append("--spot")
        return _gcloud(argv, f"create {cfg.provisioning} TPU VM {vm_name(cfg)} in {zone}", check=False)
    argv = ["queued-resources", "create", cfg.tpu_name, *_where(cfg, zone),
            f"--accelerator-type={cfg.accelerator_type}", f"--runtime-version={version}",
            f"--node-id={vm_name(cfg)}"]
    if cfg.provisioning == "queued_flex_start":
        argv += ["--provisioning-model=flex-start", f"--max-run-duration={cfg.max_run_duration}"]
    else:
        argv.append("--guaranteed")
    argv.append("--async")
    return _gcloud(argv, f"queue {cfg.provisioning} resource {cfg.tpu_name} in {zone}", check=False)


def delete_step(cfg: TpuVmConfig, zone: str) -> LaunchStep:
    if is_queued(cfg):
        argv = ["queued-resources", "delete", cfg.tpu_name, *_where(cfg, zone), "--quiet", "--force"]
    else:
        argv = ["tpu-vm", "delete", vm_name(cfg), *_where(cfg, zone), "--quiet"]
    return _gcloud(argv, f"delete {vm_name(cfg)}")


def describe_step(cfg: TpuVmConfig, zone: str) -> LaunchStep:
    return _gcloud(["tpu-vm", "describe", vm_name(cfg), *_where(cfg, zone), "--format=value(state)"],
                   f"state of {vm_name(cfg)}", check=False)


def ssh_step(cfg: TpuVmConfig, zone: str, command: str, *, worker: str = "all", description: str = "",
             check: bool = True) -> LaunchStep:
    """``tpu-vm ssh root@VM ... --worker=W --quiet --command=CMD`` (CMD built by this module)."""
    argv = ["tpu-vm", "ssh", f"root@{vm_name(cfg)}", *_where(cfg, zone), f"--worker={worker}", "--quiet",
            f"--command={command}"]
    return _gcloud(argv, description or f"ssh worker {worker}", check=check)


def scp_env_step(cfg: TpuVmConfig, zone: str, src: str) -> LaunchStep:
    argv = ["tpu-vm", "scp", src, f"root@{vm_name(cfg)}:{REMOTE_ENV_FILE}", *_where(cfg, zone),
            "--worker=all", "--quiet"]
    return _gcloud(argv, f"copy {src} to {REMOTE_ENV_FILE} on all workers")


# ------------------------------------------------------------------------------------------------
# remote commands
# ------------------------------------------------------------------------------------------------

q = shlex.quote


def _venv_dir(cfg: TpuVmConfig) -> str:
    return f"/root/venvs/{cfg.env_name}"


def _activate(cfg: TpuVmConfig) -> str:
    if cfg.install == "venv":
        return f". {q(_venv_dir(cfg) + '/bin/activate')}"
    return f". /root/miniconda3/etc/profile.d/conda.sh && conda activate {q(cfg.env_name)}"


def bootstrap_command(cfg: TpuVmConfig) -> str:
    """Environment (venv or conda), ``jax[tpu]``, checkout of ``repo_url@repo_ref``, ``pip install -e``."""
    if not cfg.repo_url:
        raise ConfigError("launcher.repo_url: required by bootstrap (pass --repo-url URL, the git URL of this "
                          "project, or set launcher.repo_url)")
    py = f"python{cfg.python}"
    lines = ["set -euo pipefail", "export DEBIAN_FRONTEND=noninteractive",
             "command -v git >/dev/null || { apt-get update -y && apt-get install -y git; }"]
    if cfg.install == "venv":
        venv = q(_venv_dir(cfg))
        lines += [
            f"if [ ! -x {venv}/bin/python ]; then",
            "  mkdir -p /root/venvs",
            f"  {py} -m venv {venv} || {{ apt-get update -y && apt-get install -y {py}-venv"
            f" && {py} -m venv {venv}; }}",
            "fi",
        ]
    else:
        lines += [
            "if [ ! -x /root/miniconda3/bin/conda ]; then",
            f"  curl -fsSL -o /root/miniconda.sh {q(MINICONDA_URL)}",
            "  bash /root/miniconda.sh -b -p /root/miniconda3",
            "fi",
            ". /root/miniconda3/etc/profile.d/conda.sh",
            "conda tos accept --override-channels --channel https://repo.anaconda.com/pkgs/main || true",
            "conda tos accept --override-channels --channel https://repo.anaconda.com/pkgs/r || true",
            f"conda env list | grep -q {q('^' + cfg.env_name + ' ')} || conda create -y -n {q(cfg.env_name)} "
            f"python={q(cfg.python)}",
        ]
    extras = f"[{','.join(cfg.extras)}]" if cfg.extras else ""
    lines += [
        _activate(cfg),
        "python -m pip install -U pip",
        f"python -m pip install -U {q('jax[tpu]')} -f {q(LIBTPU_INDEX)}",
        f"if [ ! -d {q(cfg.workdir + '/.git')} ]; then git clone {q(cfg.repo_url)} {q(cfg.workdir)}; fi",
        f"cd {q(cfg.workdir)}",
        "git fetch --all --tags --prune",
        f"git checkout {q(cfg.repo_ref)}",
        "git pull --ff-only || true",
        f"python -m pip install -e {q('.' + extras)}",
        "echo bootstrap_ok=1",
    ]
    return "\n".join(lines)


def sync_env_command() -> str:
    """Lock down the synced secrets file; prints a marker, never the contents."""
    f = q(REMOTE_ENV_FILE)
    return f"chmod 600 {f} && test -f {f} && echo env_synced=1 host=$(hostname -s)"


def run_command(cfg: TpuVmConfig, *, argv: Sequence[str], tag: str) -> str:
    """Detached ``sid run`` on one worker, with the reference ``.log/.exit/.pid`` protocol."""
    workers = num_workers(cfg)
    sid_argv = ["sid", "run", *[str(a) for a in argv], "--launcher", "local"]
    if cfg.store_uri:
        sid_argv.append(f"checkpoint_uri={cfg.store_uri}")
        if cfg.store_uri.startswith("gs://"):
            sid_argv += ["--store", "gcs"]
    runner = "\n".join([
        f"if [ -f {q(REMOTE_ENV_FILE)} ]; then set -a; . {q(REMOTE_ENV_FILE)}; set +a; fi",
        _activate(cfg),
        f"cd {q(cfg.workdir)}",
        "rm -f /tmp/libtpu_lockfile",
        shlex.join(sid_argv),
        "rc=$?",
        'echo "$rc" > "$1.exit"',
        'exit "$rc"',
    ])
    exports = ['export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}" PYTHONUNBUFFERED=1']
    if workers > 1:
        exports.append(
            f'export REQUIRE_MULTIHOST="${{REQUIRE_MULTIHOST:-1}}" REQUIRE_JAX_PROCESS_COUNT={workers}'
        )
    if cfg.bnb_stub:
        exports.append(f'export PYTHONPATH={q(cfg.workdir + "/stubs")}"${{PYTHONPATH:+:$PYTHONPATH}}"')
    t = q(tag)
    lines = [
        "set -eu",
        f"cd {q(cfg.workdir)}",
        "mkdir -p logs",
        "host=$(hostname -s)",
        "stem=" + t + '_"$host"_"$(date -u +%Y%m%d_%H%M%S)"',
        "rm -f /tmp/libtpu_lockfile",
        *exports,
        "for ext in log exit pid; do",
        '  for link in ' + t + '_"$host"_latest ' + t + "_latest sid_latest; do",
        '    ln -sfn "$stem.$ext" "logs/$link.$ext"',
        "  done",
        "done",
        f'setsid nohup bash -c {q(runner)} sid-run "logs/$stem" > "logs/$stem.log" 2>&1 < /dev/null &',
        'echo "$!" > "logs/$stem.pid"',
        f'echo "started host=$host pid=$! log={cfg.workdir}/logs/$stem.log"',
    ]
    return "\n".join(lines)


def _latest(cfg: TpuVmConfig, tag: str | None, ext: str) -> str:
    return q(f"{cfg.workdir}/logs/{tag or 'sid'}_latest.{ext}")


def exit_code_command(cfg: TpuVmConfig, tag: str | None) -> str:
    f = _latest(cfg, tag, "exit")
    return f'if [ -e {f} ]; then echo "exit=$(cat {f})"; else echo exit=missing; fi'


def logs_command(cfg: TpuVmConfig, tag: str | None, lines: int) -> str:
    return f"tail -n {int(lines)} {_latest(cfg, tag, 'log')}"


def stop_command(cfg: TpuVmConfig, tag: str | None) -> str:
    """SIGTERM the run's process group (the kernel saves a checkpoint and exits 75)."""
    f = _latest(cfg, tag, "pid")
    return (f'if [ -e {f} ] && kill -TERM -- "-$(cat {f})" 2>/dev/null; '
            'then echo stopped=1 host=$(hostname -s); else echo stopped=0 host=$(hostname -s); fi')


# ------------------------------------------------------------------------------------------------
# plans
# ------------------------------------------------------------------------------------------------


def bootstrap_step(cfg: TpuVmConfig, zone: str) -> LaunchStep:
    return ssh_step(cfg, zone, bootstrap_command(cfg), description="bootstrap all workers")


def sync_env_plan(cfg: TpuVmConfig, zone: str) -> LaunchPlan:
    return LaunchPlan(steps=(
        scp_env_step(cfg, zone, cfg.env_file),
        ssh_step(cfg, zone, sync_env_command(), description="chmod 600 /root/.env on all workers"),
    ))


def run_step(cfg: TpuVmConfig, zone: str, *, argv: Sequence[str], tag: str) -> LaunchStep:
    return ssh_step(cfg, zone, run_command(cfg, argv=argv, tag=tag),
                    description=f"start {tag} detached on all {num_workers(cfg)} worker(s)")


def exit_code_plan(cfg: TpuVmConfig, zone: str, tag: str | None) -> LaunchPlan:
    cmd = exit_code_command(cfg, tag)
    return LaunchPlan(steps=tuple(
        ssh_step(cfg, zone, cmd, worker=str(w), description=f"exit code of worker {w}", check=False)
        for w in range(num_workers(cfg))
    ))


def parse_exit_codes(stdouts: Sequence[str]) -> list[int | None]:
    """Per-worker exit codes from `exit_code_plan` outputs (``None``: no exit file / unreachable)."""
    codes: list[int | None] = []
    for out in stdouts:
        found = EXIT_RE.findall(out)
        codes.append(int(found[-1]) if found and found[-1] != "missing" else None)
    return codes


def run_request(request: Mapping[str, Any]) -> tuple[list[str], str]:
    """(``sid run`` argv to replay on the VM, run tag) from a launcher request."""
    argv = [str(a) for a in request.get("argv", ())]
    config_path = str(request.get("config_path") or "")
    if not config_path:
        raise UsageError("tpu_vm launcher: the run request has no config path")
    remote = remote_config_path(config_path)
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 < len(argv):
            argv[i + 1] = remote
    else:
        argv = ["--config", remote, *argv]
    return argv, run_tag(remote, str(request.get("run_mode") or "train_eval"))


@attrs.frozen
class TpuVmLauncher:
    """``sid run --launcher tpu_vm``: start the run detached on every worker of an existing VM."""

    cfg: TpuVmConfig

    def plan(self, request: Mapping[str, Any]) -> LaunchPlan:
        argv, tag = run_request(request)
        return LaunchPlan(steps=(run_step(self.cfg, self.cfg.zone, argv=argv, tag=tag),))


def build_tpu_vm(cfg: TpuVmConfig) -> TpuVmLauncher:
    """Factory of the ``tpu_vm`` launcher."""
    return TpuVmLauncher(cfg)
