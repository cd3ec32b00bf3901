"""How every ratio in docs/benchmarks.md is measured: the two sides alternate, and the machine is idle.

A ratio between two systems on a shared machine measures contention as much as the systems: other
processes slow a PyTorch loop far more than an XLA program (the torch loop slowed 4x at load 2.5-5
where sid slowed 1.5x). So each benchmark

- runs its sides alternately, ``A B A B ...``, for ``--rounds`` (at least 3) rounds, so a slow
  phase of the machine hits both sides alike, and reports min and median per side;
- waits up to ``--wait-idle`` seconds for the 1-minute load average to fall to ``--max-load`` (1.5)
  before it starts and refuses to run when it does not (``--allow-loaded`` runs and marks it);
- measures what *other* processes used while it ran: busy CPU time of the whole machine
  (``/proc/stat``) minus this process's and its children's (``getrusage``), in cores. The load
  average after a run includes the benchmark's own threads (a 2-thread run drives it toward 2 on
  its own), so it is printed but the idle mark is ``load before <= max-load`` and ``others <=
  --max-others`` cores (0.25);
- prints one summary line per side and the ratio of the mins and of the medians.

`Method.from_args(args)` -> ``with method.session() as s: s.alternate({...}, rounds)``; the
result dict goes into the benchmark's JSON. Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import sys
import time
from typing import Any, Callable, Iterator, Mapping

__all__ = ["add_method_args", "Method", "machine_busy_seconds", "raise_rounds", "report", "summarize"]


def add_method_args(p: argparse.ArgumentParser, rounds: int = 3) -> None:
    g = p.add_argument_group("measurement method (bench/method.py)")
    g.add_argument("--rounds", type=int, default=rounds, help="alternating rounds A B A B ... (at least 3)")
    g.add_argument("--max-load", type=float, default=1.5, help="1-minute load average allowed at the start")
    g.add_argument("--max-others", type=float, default=0.25,
                   help="cores other processes may use during the run before it is marked loaded")
    g.add_argument("--wait-idle", type=float, default=180.0, help="seconds to wait for the load to fall")
    g.add_argument("--allow-loaded", action="store_true", help="run on a busy machine and mark the result")


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (all cores; ``/proc/stat``, 0 elsewhere)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return 0.0
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and its waited-for children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def summarize(times: Mapping[str, list[float]], reference: str, subject: str) -> dict[str, Any]:
    """min/median per side and ``reference / subject`` ratios of the mins and of the medians."""
    out: dict[str, Any] = {"sides": {}}
    for name, ts in times.items():
        if ts:
            out["sides"][name] = {"n": len(ts), "min": min(ts), "median": statistics.median(ts), "all": list(ts)}
    ref, sub = out["sides"].get(reference), out["sides"].get(subject)
    if ref and sub:
        out["ratio_min"] = ref["min"] / sub["min"]
        out["ratio_median"] = ref["median"] / sub["median"]
    return out


class Method:
    """Idle check before, alternation, and the record of what else ran (see the module docstring)."""

    def __init__(self, rounds: int = 3, max_load: float = 1.5, max_others: float = 0.25, wait_idle: float = 180.0,
                 allow_loaded: bool = False) -> None:
        if rounds < 3:
            sys.exit(f"--rounds {rounds}: at least 3 alternating rounds are needed for a ratio")
        self.rounds, self.max_load, self.max_others = rounds, max_load, max_others
        self.wait_idle, self.allow_loaded = wait_idle, allow_loaded
        self.record: dict[str, Any] = {}

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> "Method":
        return cls(a.rounds, a.max_load, a.max_others, a.wait_idle, a.allow_loaded)

    def wait_for_idle(self) -> tuple[float, float, float]:
        deadline = time.monotonic() + self.wait_idle
        load = os.getloadavg()
        while load[0] > self.max_load and time.monotonic() < deadline:
            time.sleep(5.0)
            load = os.getloadavg()
        if load[0] > self.max_load and not self.allow_loaded:
            sys.exit(f"load average {load[0]:.2f} > --max-load {self.max_load} after waiting {self.wait_idle:.0f} s: "
                     "not measuring on a busy machine (--allow-loaded runs anyway and marks the result)")
        return load

    @contextlib.contextmanager
    def session(self) -> Iterator["Method"]:
        """Idle check, then the measured block; fills `record` with loads, others' CPU and the idle mark."""
        before = self.wait_for_idle()
        print(f"load before: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}", flush=True)
        busy0, own0, t0 = machine_busy_seconds(), own_cpu_seconds(), time.monotonic()
        yield self
        wall = max(time.monotonic() - t0, 1e-9)
        others = max(0.0, (machine_busy_seconds() - busy0) - (own_cpu_seconds() - own0)) / wall
        after = os.getloadavg()
        idle = before[0] <= self.max_load and others <= self.max_others
        self.record.update({"load_before": list(before), "load_after": list(after), "others_cores": others,
                            "wall_s": wall, "idle": idle, "rounds": self.rounds,
                            "max_load": self.max_load, "max_others": self.max_others})
        print(f"load after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f} (includes this run's own threads); "
              f"other processes used {others:.2f} cores -> {'IDLE' if idle else 'LOADED: not a headline number'}",
              flush=True)

    def alternate(self, sides: Mapping[str, Callable[[], Any]], rounds: int | None = None
                  ) -> dict[str, list[float]]:
        """Run each side once per round in the given order, ``rounds`` times (A B A B ...).

        A side returns None (its wall time is the sample), a float (its own timing, e.g. excluding
        set-up) or a list of floats (several samples, e.g. per step)."""
        times: dict[str, list[float]] = {name: [] for name in sides}
        for r in range(rounds or self.rounds):
            for name, fn in sides.items():
                t0 = time.perf_counter()
                got = fn()
                wall = time.perf_counter() - t0
                samples = [wall] if got is None else ([float(got)] if isinstance(got, (int, float)) else
                                                      [float(x) for x in got])
                times[name].extend(samples)
                print(f"round {r}: {name} {statistics.median(samples):.4g} s" +
                      (f" (median of {len(samples)})" if len(samples) > 1 else ""), flush=True)
        return times


def raise_rounds(args: argparse.Namespace, flag: str = "--rounds") -> None:
    """Raise ``args.rounds`` to bench/method.py's minimum of 3, saying so.

    The commands recorded in docs/benchmarks.md (``--rounds 2``, ``--runs 2``) must keep running;
    they now measure 3 alternating rounds. ``args.rounds_asked`` keeps what was asked."""
    args.rounds_asked = args.rounds
    if args.rounds < 3:
        print(f"{flag} {args.rounds} raised to 3: bench/method.py needs at least 3 alternating rounds for a ratio",
              flush=True)
        args.rounds = 3


def report(times: dict[str, list[float]], reference: str, subject: str, unit: str = "s") -> dict[str, Any]:
    """`summarize` plus its printed lines: min / median per side, ``reference / subject`` ratios."""
    s = summarize(times, reference=reference, subject=subject)
    s["reference"], s["subject"], s["unit"] = reference, subject, unit
    for name in (reference, subject):
        if name in s["sides"]:
            v = s["sides"][name]
            print(f"  {name}: min {v['min']:.4g} {unit}, median {v['median']:.4g} {unit} ({v['n']} samples)",
                  flush=True)
    if "ratio_min" in s:
        print(f"  ratio {reference} / {subject}: {s['ratio_min']:.2f}x of the mins, {s['ratio_median']:.2f}x of "
              "the medians", flush=True)
    return s
