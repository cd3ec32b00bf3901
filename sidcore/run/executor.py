"""The kernel's plan executor and the multi-process environment contract.

Launcher plugins never spawn processes: they return a `LaunchPlan` (argv lists plus extra env) and
this module runs it. Sequential plans stop at the first failing step whose ``check`` is set and
raise a one-line `LaunchError`; parallel plans start every step at once, prefix each line of
output with the step index, and terminate the others as soon as one checked step fails.
``dry_run`` prints each argv with ``shlex.join`` and runs nothing. Env values whose names look
secret (``KEY``, ``TOKEN``, ``SECRET``, ``PASSWORD``, ``CREDENTIAL``) are masked when printed.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Sequence

import attrs

from sidcore.errors import LaunchError
from sidcore.interfaces import LaunchPlan, LaunchStep

log = logging.getLogger(__name__)

SECRET_RE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
MASK = "***"
TERMINATE_GRACE_S = 5.0

Echo = Callable[[str], None]


@attrs.frozen(kw_only=True)
class StepResult:
    """What one executed (or dry-run) step produced."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""


def echo_stderr(line: str) -> None:
    """Default echo: one line to stderr (user-facing progress, not logging)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


# ------------------------------------------------------------------------------------------------
# formatting
# ------------------------------------------------------------------------------------------------


def is_secret(name: str) -> bool:
    """True for env names whose values must never be printed (``WANDB_API_KEY``, ``HF_TOKEN``)."""
    return bool(SECRET_RE.search(name))


def _mask_arg(arg: str) -> str:
    name, sep, _ = arg.partition("=")
    if sep and is_secret(name.lstrip("-")):
        return f"{name}={MASK}"
    return arg


def format_step(step: LaunchStep) -> str:
    """``KEY=VAL ... argv`` as one shell-quoted line, with secret values masked."""
    env = [f"{k}={MASK if is_secret(k) else v}" for k, v in sorted(step.env.items())]
    return shlex.join([*env, *(_mask_arg(a) for a in step.argv)])


def format_plan(plan: LaunchPlan) -> str:
    """Human-readable plan: one numbered line per step (``in-process`` for the local launcher)."""
    if plan.in_process and not plan.steps:
        return "in-process run (no subprocesses)"
    mode = "parallel" if plan.parallel else "sequential"
    lines = [f"# {len(plan.steps)} step(s), {mode}"]
    for i, step in enumerate(plan.steps):
        if step.description:
            lines.append(f"# [{i}] {step.description}")
        lines.append(f"[{i}] {format_step(step)}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# execution
# ------------------------------------------------------------------------------------------------


def _child_env(step: LaunchStep) -> dict[str, str]:
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in step.env.items()})
    return env


class _Running:
    """One started step: the process plus threads that tee its output into buffers and `echo`."""

    def __init__(self, index: int, step: LaunchStep, echo: Echo | None, prefix: str) -> None:
        self.index, self.step = index, step
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - argv list, shell=False
                list(step.argv), env=_child_env(step), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL, text=True, errors="replace", shell=False,
                start_new_session=True,
            )
        except OSError as exc:
            raise LaunchError(f"step {index} ({_name(step)}): cannot start {step.argv[0]!r}: {exc}") from None
        self.out: list[str] = []
        self.err: list[str] = []
        self.threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out, echo, prefix), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err, echo, prefix), daemon=True),
        ]
        for t in self.threads:
            t.start()

    @staticmethod
    def _pump(stream: Any, sink: list[str], echo: Echo | None, prefix: str) -> None:
        for line in stream:
            sink.append(line)
            if echo is not None:
                echo(prefix + line.rstrip("\n"))
        stream.close()

    def wait(self) -> StepResult:
        self.proc.wait()
        return self.result()

    def result(self) -> StepResult:
        for t in self.threads:
            t.join()
        return StepResult(argv=tuple(self.step.argv), returncode=self.proc.returncode,
                          stdout="".join(self.out), stderr="".join(self.err))

    def terminate(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                return


def _name(step: LaunchStep) -> str:
    return step.description or os.path.basename(step.argv[0])


def _failure(index: int, step: LaunchStep, res: StepResult) -> LaunchError:
    tail = (res.stderr.strip().splitlines() or [""])[-1]
    hint = f": {tail[:200]}" if tail else ""
    return LaunchError(f"step {index} ({_name(step)}) failed with exit code {res.returncode}{hint}")


def execute(
    plan: LaunchPlan,
    *,
    dry_run: bool = False,
    echo: Echo | None = echo_stderr,
    stream: bool = True,
    poll_s: float = 0.05,
) -> list[StepResult]:
    """Run (or, with ``dry_run``, print) a plan's steps.

    Args:
        plan: the launcher's plan. ``in_process`` plans with no steps have nothing to execute.
        dry_run: print every step (``shlex.join``, secrets masked) and run nothing.
        echo: sink for progress and output lines (``None``: silent).
        stream: forward each child output line to ``echo`` as it arrives.
        poll_s: how often parallel steps are polled.

    Returns:
        One `StepResult` per executed step (dry run: returncode 0, empty output).

    Raises:
        LaunchError: a step with ``check=True`` exited non-zero (names the step and exit code),
            or an executable could not be started.
    """
    if dry_run:
        if echo is not None:
            echo(format_plan(plan))
        return [StepResult(argv=tuple(s.argv), returncode=0) for s in plan.steps]
    for i, step in enumerate(plan.steps):
        if not step.argv or not all(isinstance(a, str) for a in step.argv):
            raise LaunchError(
                f"step {i} ({step.description or '?'}): argv must be a non-empty list of strings"
            )
    if plan.parallel:
        return _execute_parallel(plan.steps, echo, stream, poll_s)
    results = []
    for i, step in enumerate(plan.steps):
        if echo is not None:
            echo(f"$ {format_step(step)}")
        running = _Running(i, step, echo if stream else None, "")
        try:
            res = running.wait()
        except BaseException:
            _stop_all([running])
            raise
        results.append(res)
        if step.check and res.returncode != 0:
            raise _failure(i, step, res)
    return results


def _execute_parallel(
    steps: Sequence[LaunchStep], echo: Echo | None, stream: bool, poll_s: float
) -> list[StepResult]:
    running: list[_Running] = []
    try:
        for i, step in enumerate(steps):
            if echo is not None:
                echo(f"[{i}] $ {format_step(step)}")
            running.append(_Running(i, step, echo if stream else None, f"[{i}] "))
        failed: _Running | None = None
        while failed is None and any(r.proc.poll() is None for r in running):
            failed = next((r for r in running if r.step.check and r.proc.poll() not in (None, 0)), None)
            if failed is None:
                time.sleep(poll_s)
        if failed is None:
            failed = next((r for r in running if r.step.check and r.proc.returncode != 0), None)
        if failed is not None:
            _stop_all(running)
            res = failed.result()
            raise _failure(failed.index, failed.step, res)
        return [r.result() for r in running]
    except BaseException:
        _stop_all(running)
        raise


def _stop_all(running: Sequence[_Running]) -> None:
    for r in running:
        r.terminate()
    deadline = time.monotonic() + TERMINATE_GRACE_S
    for r in running:
        try:
            r.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(r.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            r.proc.wait()
