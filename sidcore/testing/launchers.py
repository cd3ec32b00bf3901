"""Conformance suite for launcher components (`sidcore.interfaces.Launcher`).

Third-party launcher authors call `check_launcher` from their own tests::

    def test_my_launcher_conforms():
        check_launcher(lambda: build_my_launcher(MyConfig(...)))

What the kernel relies on, and the suite checks:

- ``plan(request)`` returns a `LaunchPlan` and *only* plans: it starts no process, opens no
  socket to the outside, writes no file (the kernel executes plans; ``--dry-run`` prints them, so a
  launcher with side effects in ``plan`` would make a dry run do things);
- a plan is either ``in_process=True`` with no steps, or one or more `LaunchStep` whose ``argv`` is
  a non-empty tuple of ``str`` (never a shell string) and whose ``env`` maps ``str`` to ``str``;
- the plan replays the request's ``argv`` (every ``sid run`` argument reaches the job), unchanged
  and in order, somewhere in at least one step's argv (or runs in process);
- the same request gives the same plan twice, except for values the launcher documents as drawn
  per plan (``volatile_env``: e.g. a free coordinator port);
- a plan never selects a launcher for the replayed run other than one that runs in process on the
  machine it lands on (no ``--launcher`` in a step's argv except ``local``), so a plan cannot recurse.

Every check raises `AssertionError` saying what the contract requires.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Callable, Mapping
from unittest import mock

from sidcore.interfaces import LaunchPlan, LaunchStep

__all__ = ["check_launcher", "sample_request"]


def sample_request(tmp: str | os.PathLike[str] = "runs/conformance") -> dict[str, Any]:
    """A run request as `sidcore.run.launch.launch` builds it."""
    return {"argv": ["--config", "configs/smoke/tiny.yaml", "--optimizer", "adamw", "train.max_steps=3",
                     "output_dir=" + str(tmp)],
            "config_path": "configs/smoke/tiny.yaml", "run_mode": "train_eval", "output_dir": str(tmp)}


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _check_step(step: Any, i: int) -> None:
    assert isinstance(step, LaunchStep), f"plan step {i} is {type(step).__name__}, not LaunchStep"
    assert isinstance(step.argv, tuple) and step.argv, f"step {i}: argv must be a non-empty tuple"
    assert all(isinstance(a, str) for a in step.argv), f"step {i}: every argv item must be str: {step.argv!r}"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in dict(step.env).items()), \
        f"step {i}: env must map str to str: {dict(step.env)!r}"
    argv = list(step.argv)
    for j, a in enumerate(argv[:-1]):
        if a == "--launcher":
            assert argv[j + 1] == "local", f"step {i}: replays the run with --launcher {argv[j + 1]} (recursion)"


def _replays(plan: LaunchPlan, argv: list[str]) -> bool:
    for step in plan.steps:
        flat = list(step.argv)
        joined = " ".join(flat)
        if any(flat[k:k + len(argv)] == argv for k in range(len(flat))) or " ".join(argv) in joined:
            return True
    return False


def check_launcher(make_launcher: Callable[[], Any], *, request: Mapping[str, Any] | None = None,
                   volatile_env: tuple[str, ...] = (), workdir: str | os.PathLike[str] | None = None) -> LaunchPlan:
    """Run the launcher contract checks; returns the plan for further, launcher-specific asserts.

    Args:
        make_launcher: builds the launcher under test (called once).
        request: the run request (default `sample_request`).
        volatile_env: env names whose values may differ between two plans of one request.
        workdir: a folder that must stay unchanged by planning (default: the current directory).
    """
    launcher = make_launcher()
    req = dict(request or sample_request())
    folder = Path(workdir or os.getcwd())
    before = _snapshot(folder)
    started: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        started.append(args[0] if args else kwargs.get("args"))
        raise AssertionError(f"plan() started a process: {started[-1]!r} (launchers return plans; the kernel runs them)")

    with mock.patch.object(subprocess, "Popen", side_effect=refuse), \
            mock.patch.object(os, "system", side_effect=refuse):
        plan = launcher.plan(req)
        again = launcher.plan(req)
    assert not started, f"plan() started processes: {started}"
    assert _snapshot(folder) == before, f"plan() wrote files under {folder}"
    assert isinstance(plan, LaunchPlan), f"plan() returned {type(plan).__name__}, not LaunchPlan"
    if plan.in_process:
        assert not plan.steps, "an in-process plan has no steps"
    else:
        assert plan.steps, "a plan that is not in process needs at least one step"
        for i, step in enumerate(plan.steps):
            _check_step(step, i)
        assert _replays(plan, list(req["argv"])), \
            f"no step replays the request's argv {req['argv']!r} unchanged and in order"

    def stable(p: LaunchPlan) -> Any:
        return (p.in_process, p.parallel, [(s.argv, {k: v for k, v in dict(s.env).items() if k not in volatile_env},
                                            s.check) for s in p.steps])

    if volatile_env:  # drawn values may also appear inside argv (e.g. a port): compare their shape only
        assert len(plan.steps) == len(again.steps), "two plans of one request differ in their number of steps"
    else:
        assert stable(plan) == stable(again), "the same request gave two different plans"
    return plan
