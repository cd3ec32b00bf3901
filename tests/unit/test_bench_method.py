"""`bench/method.py`, the measurement method of every ratio in docs/benchmarks.md: `summarize`'s
min/median and ratios, `Method.alternate`'s A B A B order and samples per side, and the refusal to
measure on a busy machine (the load average is faked; no waiting)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def method():
    spec = importlib.util.spec_from_file_location("bench_method_under_test", ROOT / "bench" / "method.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def test_summarize_min_median_and_ratios(method):
    s = method.summarize({"hf": [4.0, 2.0, 3.0], "sid": [1.0, 0.5, 2.0], "empty": []}, reference="hf", subject="sid")
    assert s["sides"]["hf"] == {"n": 3, "min": 2.0, "median": 3.0, "all": [4.0, 2.0, 3.0]}
    assert s["sides"]["sid"]["min"] == 0.5 and s["sides"]["sid"]["median"] == 1.0
    assert "empty" not in s["sides"]
    assert s["ratio_min"] == pytest.approx(4.0) and s["ratio_median"] == pytest.approx(3.0)
    assert "ratio_min" not in method.summarize({"sid": [1.0]}, reference="hf", subject="sid")


def test_alternate_runs_the_sides_in_turn_and_collects_their_samples(method, capsys):
    calls: list[str] = []

    def a():
        calls.append("A")  # None: the wall time is the sample

    def b():
        calls.append("B")
        return 0.25  # its own timing

    def c():
        calls.append("C")
        return [1.0, 2.0]  # several samples

    m = method.Method(rounds=3)
    times = m.alternate({"a": a, "b": b, "c": c})
    assert calls == ["A", "B", "C"] * 3
    assert len(times["a"]) == 3 and all(t >= 0 for t in times["a"])
    assert times["b"] == [0.25] * 3
    assert times["c"] == [1.0, 2.0] * 3
    out = capsys.readouterr().out
    assert out.index("round 0: a") < out.index("round 0: b") < out.index("round 1: a")
    assert len(method.Method(rounds=3).alternate({"a": a}, rounds=4)["a"]) == 4


def test_fewer_than_three_rounds_are_refused(method):
    with pytest.raises(SystemExit, match="at least 3"):
        method.Method(rounds=2)


def test_a_busy_machine_is_refused_unless_allowed(method, monkeypatch, capsys):
    monkeypatch.setattr(method.os, "getloadavg", lambda: (3.0, 2.5, 2.0))
    busy = method.Method(rounds=3, max_load=1.5, wait_idle=0)
    with pytest.raises(SystemExit, match="load average 3.00 > --max-load 1.5"), busy.session():
        pytest.fail("measured on a busy machine")
    allowed = method.Method(rounds=3, max_load=1.5, wait_idle=0, allow_loaded=True)
    with allowed.session():
        pass
    assert allowed.record["idle"] is False and allowed.record["load_before"] == [3.0, 2.5, 2.0]
    assert "LOADED" in capsys.readouterr().out


def test_an_idle_machine_is_marked_idle(method, monkeypatch):
    monkeypatch.setattr(method.os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    monkeypatch.setattr(method, "machine_busy_seconds", lambda: 100.0)  # nothing else ran
    m = method.Method(rounds=3, wait_idle=0)
    with m.session():
        pass
    assert m.record["idle"] is True and m.record["others_cores"] == 0.0


def test_the_method_flags_and_their_defaults(method):
    import argparse

    p = argparse.ArgumentParser()
    method.add_method_args(p)
    m = method.Method.from_args(p.parse_args([]))
    assert (m.rounds, m.max_load, m.max_others, m.allow_loaded) == (3, 1.5, 0.25, False)
    m = method.Method.from_args(p.parse_args(["--rounds", "5", "--wait-idle", "0", "--allow-loaded"]))
    assert (m.rounds, m.wait_idle, m.allow_loaded) == (5, 0.0, True)


def test_older_commands_asking_for_two_rounds_get_three(method, capsys):
    """`raise_rounds`: the docs' ``--rounds 2`` / ``--runs 2`` commands keep running."""
    import argparse

    args = argparse.Namespace(rounds=2)
    method.raise_rounds(args, "--runs")
    assert (args.rounds, args.rounds_asked) == (3, 2)
    assert "--runs 2 raised to 3" in capsys.readouterr().out
    args = argparse.Namespace(rounds=5)
    method.raise_rounds(args)
    assert (args.rounds, args.rounds_asked) == (5, 5)
