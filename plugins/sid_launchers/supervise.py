"""TPU VM operations with decisions: zone fallback, waiting for READY, auto-resume after preemption.

`TpuOps` glues the pure plans of `sid_launchers.tpu_vm` to the kernel's executor. It never spawns
processes itself: every gcloud call is a `LaunchPlan` handed to `sidcore.run.executor.execute` (or
printed, in dry-run mode). `TpuOps.supervise` is the spot-VM babysitter: it polls the VM state and
the workers' exit files; on ``PREEMPTED`` it deletes the VM, recreates it (zone fallback included),
bootstraps it, re-syncs ``.env`` and starts the same run again, which resumes from the checkpoint
store because ``sid run`` continues from an existing checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

from sidcore.api import StepResult, echo_stderr, execute_plan
from sidcore.api import LaunchError, SidError
from sidcore.api import LaunchPlan, LaunchStep
from sid_launchers import tpu_exec as tx
from sid_launchers import tpu_vm as tv
from sid_launchers.config import TpuVmConfig

GONE_STATES = ("PREEMPTED", "TERMINATED", "STOPPED", "NOT_FOUND")


class TpuOps:
    """One TPU VM's operations; ``zone`` follows the VM when create falls back to another zone."""

    def __init__(
        self,
        cfg: TpuVmConfig,
        *,
        dry_run: bool = False,
        echo: Callable[[str], None] | None = echo_stderr,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = cfg
        self.dry_run = dry_run
        self.echo = echo
        self.sleep = sleep
        self.zone = cfg.zone

    # -- plumbing ---------------------------------------------------------------------------------

    def _say(self, line: str) -> None:
        if self.echo is not None:
            self.echo(line)

    def _exec(self, plan: LaunchPlan, *, stream: bool = True) -> list[StepResult]:
        return execute_plan(plan, dry_run=self.dry_run, echo=self.echo, stream=stream)

    def _one(self, step: LaunchStep, *, stream: bool = True) -> StepResult:
        return self._exec(LaunchPlan(steps=(step,)), stream=stream)[0]

    # -- single operations ------------------------------------------------------------------------

    def create(self) -> str | None:
        """Create in the first zone with capacity; return that zone (``None`` in dry-run)."""
        zones = tv.zones(self.cfg)
        if self.dry_run:
            self._one(tv.create_step(self.cfg, zones[0]))
            if len(zones) > 1:
                self._say(f"# on a capacity/quota error: retry in {', '.join(zones[1:])}")
            return None
        errors = []
        for zone in zones:
            res = self._one(tv.create_step(self.cfg, zone))
            if res.returncode == 0:
                self.zone = zone
                return zone
            tail = (res.stderr.strip().splitlines() or ["?"])[-1]
            if not tv.is_capacity_error(res.stderr):
                raise LaunchError(
                    f"create {tv.vm_name(self.cfg)} in {zone} failed (exit {res.returncode}): {tail}"
                )
            errors.append(f"{zone}: {tail}")
            self._say(f"no capacity in {zone}; trying the next zone")
        raise LaunchError(f"create {tv.vm_name(self.cfg)}: no capacity in any zone ({'; '.join(errors)})")

    def state(self) -> str | None:
        """The VM state (``NOT_FOUND`` when it does not exist); ``None`` in dry-run."""
        res = self._one(tv.describe_step(self.cfg, self.zone), stream=False)
        if self.dry_run:
            return None
        if res.returncode == 0:
            return res.stdout.strip().splitlines()[-1].strip() if res.stdout.strip() else "UNKNOWN"
        if tv.is_not_found(res.stderr):
            return "NOT_FOUND"
        tail = (res.stderr.strip().splitlines() or [""])[-1]
        raise LaunchError(f"describe {tv.vm_name(self.cfg)} failed (exit {res.returncode}): {tail}")

    def wait_ready(self) -> str:
        """Poll the state until READY (returned) or a lost state such as PREEMPTED (returned too).

        Raises:
            LaunchError: neither after ``max_ready_polls`` polls.
        """
        if self.dry_run:
            self.state()
            return "READY"
        seen = "?"
        for _ in range(self.cfg.max_ready_polls):
            seen = self.state() or "?"
            if seen == "READY" or (seen in GONE_STATES and seen != "NOT_FOUND"):
                return seen
            self.sleep(self.cfg.poll_interval_s)
        raise LaunchError(
            f"{tv.vm_name(self.cfg)} not READY after {self.cfg.max_ready_polls} polls (last: {seen})"
        )

    def bootstrap(self) -> None:
        self._one(tv.bootstrap_step(self.cfg, self.zone))

    def sync_env(self, *, required: bool = True) -> None:
        """Copy the secrets file to every worker (mode 600); contents are never printed."""
        if not Path(self.cfg.env_file).is_file():  # a dry run checks it too: it is a local file
            if required:
                raise SidError(f"{self.cfg.env_file}: env file not found (launcher.env_file)")
            self._say(f"no {self.cfg.env_file}; skipping sync-env")
            return
        self._exec(tv.sync_env_plan(self.cfg, self.zone))

    def exec(self, command: str, *, worker: str, in_workdir: bool) -> None:
        self._one(tx.exec_step(self.cfg, self.zone, command, worker=worker, in_workdir=in_workdir))

    def copy(self, src: str, dst: str, *, worker: str, recurse: bool) -> None:
        """scp between here and the workers; a missing local source fails here (dry run too)."""
        if not src.startswith(":"):
            local = Path(src)
            if not local.exists():
                raise SidError(f"{src}: no such file or folder (sid tpu copy source)")
            if local.is_dir() and not recurse:
                raise SidError(f"{src}: is a folder; add --recurse to copy it")
        self._one(tx.copy_step(self.cfg, self.zone, src, dst, worker=worker, recurse=recurse))

    def run(self, argv: Sequence[str], tag: str) -> None:
        self._one(tv.run_step(self.cfg, self.zone, argv=argv, tag=tag))

    def logs(self, tag: str | None, worker: str, lines: int) -> None:
        step = tv.ssh_step(self.cfg, self.zone, tv.logs_command(self.cfg, tag, lines), worker=worker,
                           description=f"log of worker {worker}")
        res = self._one(step, stream=False)
        if not self.dry_run:
            import click

            click.echo(res.stdout, nl=False)

    def exit_codes(self, tag: str | None) -> list[int | None] | None:
        """Every worker's exit code (``None``: no exit file yet); ``None`` in dry-run."""
        results = self._exec(tv.exit_code_plan(self.cfg, self.zone, tag), stream=False)
        if self.dry_run:
            return None
        return tv.parse_exit_codes([r.stdout if r.returncode == 0 else "" for r in results])

    def stop(self, tag: str | None) -> None:
        cmd = tv.stop_command(self.cfg, tag)
        self._one(tv.ssh_step(self.cfg, self.zone, cmd, description="stop the run"))

    def delete(self) -> None:
        self._one(tv.delete_step(self.cfg, self.zone))

    # -- supervision ------------------------------------------------------------------------------

    def bring_up(self, argv: Sequence[str], tag: str) -> bool:
        """create (zone fallback) -> READY -> bootstrap -> sync-env -> run; False if lost while waiting."""
        self.create()
        if self.wait_ready() != "READY":
            return False
        self.start(argv, tag)
        return True

    def start(self, argv: Sequence[str], tag: str) -> None:
        """bootstrap -> sync-env (skipped without an env file) -> run, on a READY VM."""
        self.bootstrap()
        self.sync_env(required=False)
        self.run(argv, tag)

    def supervise(self, argv: Sequence[str], tag: str, *, launch: bool = False) -> int | None:
        """Follow a run to success across preemptions; return the number of restarts.

        Raises:
            LaunchError: a worker exited non-zero, or more than ``max_restarts`` recoveries.
        """
        if self.dry_run:
            self._say("# supervise: poll the state and exit codes every "
                      f"{self.cfg.poll_interval_s:g}s; on {'/'.join(GONE_STATES)}: delete, recreate, rerun")
            if launch:
                self.bring_up(argv, tag)
            self.state()
            self.exit_codes(tag)
            self.delete()
            self.bring_up(argv, tag)
            return None
        restarts = 0
        if launch:
            state = self.state()
            if state == "NOT_FOUND":
                self.bring_up(argv, tag)
            elif state not in GONE_STATES and self.wait_ready() == "READY":
                self.start(argv, tag)
        while True:
            state = self.state()
            if state in GONE_STATES:
                restarts += 1
                if restarts > self.cfg.max_restarts:
                    raise LaunchError(f"{tv.vm_name(self.cfg)} {state} again; gave up after "
                                      f"{self.cfg.max_restarts} restart(s)")
                self._say(f"{tv.vm_name(self.cfg)} is {state}: recreating and resuming ({restarts}/"
                          f"{self.cfg.max_restarts})")
                if state != "NOT_FOUND":
                    self.delete()
                self.bring_up(argv, tag)
                continue
            if state == "READY":
                codes = self.exit_codes(tag) or []
                failed = [(w, c) for w, c in enumerate(codes) if c not in (None, 0)]
                if failed:
                    what = ", ".join(f"worker {w} exit {c}" for w, c in failed)
                    raise LaunchError(f"run {tag} failed: {what}")
                if codes and all(c == 0 for c in codes):
                    return restarts
            self.sleep(self.cfg.poll_interval_s)
