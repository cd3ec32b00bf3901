"""Run the stages in order: skip a stage whose record matches, run the rest through sid's CLI group.

A stage record ``W/.pipeline/<stage>.json`` holds the stage's fingerprint (sha256 of its input
files' sha256 and its own options), its inputs, options and outputs. It is written as ``running``
before the stage's commands start and as ``done`` after they succeed, so a stage interrupted half
way is known as the pipeline's own work and simply runs again (an ``sft`` / ``rl`` stage reruns
``sid run`` into the same run folder, which resumes). Outputs that exist without any record were
not written by this pipeline: that is an error naming the stage and the remedy (``--force-stage``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import attrs
import click

from sidcore.errors import ConfigError, SidError, UsageError
from sidcore.pipeline.spec import STAGES, PipelineSpec
from sidcore.pipeline.stages import MissingInput, StagePlan, check_options, plan_stage

__all__ = ["Decision", "record_path", "run_pipeline"]


@attrs.frozen
class Decision:
    stage: str
    action: str  # run | skip | pending | off (not selected)
    why: str


def record_path(spec: PipelineSpec, stage: str) -> Path:
    return spec.work_dir / ".pipeline" / f"{stage}.json"


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable stage record ({exc}); remove it to run the stage again") from None
    return rec if isinstance(rec, dict) else None


def _write_record(path: Path, plan: StagePlan, state: str) -> None:
    rec = {"stage": plan.name, "state": state, "fingerprint": plan.fingerprint,
           "inputs": {k: {"path": str(p), "sha256": plan.digests.get(k)} for k, p in plan.inputs.items()},
           "options": plan.options, "outputs": [str(p) for p in plan.outputs],
           "run_dir": str(plan.run_dir) if plan.run_dir else None,
           "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(rec, fh, indent=2, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _changed(rec: dict[str, Any], plan: StagePlan) -> str:
    """Which inputs / options differ from the record (for the log line)."""
    old_in = {k: (v or {}).get("sha256") for k, v in (rec.get("inputs") or {}).items()}
    keys = [f"input {k}" for k in sorted(set(old_in) | set(plan.digests)) if old_in.get(k) != plan.digests.get(k)]
    old_opt = rec.get("options") or {}
    keys += [f"option {k}" for k in sorted(set(old_opt) | set(plan.options))
             if json.dumps(old_opt.get(k), sort_keys=True, default=str)
             != json.dumps(plan.options.get(k), sort_keys=True, default=str)]
    return ", ".join(keys) or "fingerprint"


def decide(spec: PipelineSpec, plan: StagePlan, *, forced: bool) -> Decision:
    """run or skip one planned stage (or raise: outputs that this pipeline did not write)."""
    path = record_path(spec, plan.name)
    rec = _read_record(path)
    have = [p for p in plan.outputs if p.exists()]
    if forced:
        return Decision(plan.name, "run", "--force-stage")
    if rec is None:
        if have and plan.kind == "files":
            raise ConfigError(
                f"stage {plan.name}: {have[0]} exists but {path} does not (not written by this pipeline): move it "
                f"away, point work_dir elsewhere, or pass --force-stage {plan.name} to replace it")
        return Decision(plan.name, "run", "no record yet" if not have else "resuming its run folder")
    if rec.get("fingerprint") != plan.fingerprint:
        return Decision(plan.name, "run", f"changed since {path}: {_changed(rec, plan)}")
    if rec.get("state") != "done":
        return Decision(plan.name, "run", f"interrupted ({path} says {rec.get('state')!r}): running it again")
    if len(have) != len(plan.outputs):
        missing = next(p for p in plan.outputs if not p.exists())
        return Decision(plan.name, "run", f"output {missing} is missing")
    return Decision(plan.name, "skip", f"record {path} matches (fingerprint {plan.fingerprint[:12]})")


def _selected(spec: PipelineSpec, first: str | None, last: str | None) -> list[str]:
    enabled = spec.enabled()
    for flag, name in (("--from", first), ("--until", last)):
        if name is not None and name not in enabled:
            raise UsageError(f"{flag} {name}: not a stage of {spec.path} (it has: {', '.join(enabled)})")
    lo = STAGES.index(first) if first else 0
    hi = STAGES.index(last) if last else len(STAGES) - 1
    if lo > hi:
        raise UsageError(f"--from {first} comes after --until {last}")
    return [s for s in enabled if lo <= STAGES.index(s) <= hi]


def _invoke(group: click.Group, stage: str, argv: list[str]) -> None:
    """``sid <argv>`` in this process; a usage error becomes one line naming the stage."""
    try:
        group.main(args=argv, prog_name="sid", standalone_mode=False)
    except click.exceptions.Exit as exc:
        if exc.exit_code:
            raise SidError(f"stage {stage}: sid {' '.join(argv[:2])} exited with {exc.exit_code}") from None
    except click.ClickException as exc:
        raise ConfigError(f"stage {stage}: sid {' '.join(argv[:2])}: {exc.format_message()}") from None
    except SidError as exc:
        try:
            named = type(exc)(f"stage {stage}: {exc}")
        except TypeError:  # an error class with its own constructor: keep it as it is
            raise exc from None
        raise named from exc


def _say(dec: Decision) -> Decision:
    click.echo(f"[pipeline] {dec.action} {dec.stage}: {dec.why}")
    return dec


def _print_saved_table(plan: StagePlan) -> None:
    from sidcore.report.table import print_table

    saved = (plan.run_dir or Path()) / "eval_predictions.metrics.json"
    try:
        metrics = json.loads(saved.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(metrics, dict) and "topk" in metrics:
        click.echo(f"evaluation of the last run ({saved}):")
        print_table(metrics)


def run_pipeline(spec: PipelineSpec, group: click.Group, registry: Any, *, dry_run: bool = False,
                 first: str | None = None, last: str | None = None,
                 force: tuple[str, ...] = ()) -> list[Decision]:
    """Run (or with `dry_run` only decide) the selected stages in order; returns each decision."""
    for name in force:
        if name not in spec.enabled():
            raise UsageError(f"--force-stage {name}: not a stage of {spec.path} (it has: {', '.join(spec.enabled())})")
    selected = _selected(spec, first, last)
    check_options(spec, group)
    run_dirs: dict[str, Path] = {}
    decisions: list[Decision] = []
    ran: list[str] = []
    last_plan: StagePlan | None = None
    for name in spec.enabled():
        if last is not None and STAGES.index(name) > STAGES.index(last):  # never needed: not even planned
            decisions.append(_say(Decision(name, "off", "not selected (--until)")))
            continue
        try:
            plan = plan_stage(spec, name, group, registry, run_dirs)
        except MissingInput as exc:
            if name in selected and (dry_run and ran):
                decisions.append(_say(Decision(name, "pending", f"decided after {ran[-1]} has run")))
                continue
            if name not in selected:
                decisions.append(_say(Decision(name, "off", "not selected (--from/--until)")))
                continue
            if name == "data":
                raise ConfigError(f"{spec.path}: data.{exc.label}: no such file {exc.path}") from None
            raise ConfigError(f"stage {name}: input {exc.label} {exc.path} is missing: run the stage that writes "
                              "it first" + (" (it is before --from)" if first else "")) from None
        if plan.run_dir is not None and name in ("sft", "rl"):
            run_dirs[name] = plan.run_dir
        if name not in selected:
            decisions.append(_say(Decision(name, "off", "not selected (--from/--until)")))
            continue
        dec = decide(spec, plan, forced=name in force)
        if dry_run and ran and dec.action == "skip":
            dec = Decision(name, "pending", f"skip unless {ran[-1]} changes its inputs ({dec.why})")
        decisions.append(_say(dec))
        if dry_run:
            if dec.action == "run":
                ran.append(name)
                for argv in plan.commands:
                    click.echo(f"    sid {' '.join(argv)}")
            continue
        if dec.action == "skip":
            last_plan = plan
            continue
        rec = record_path(spec, name)
        _write_record(rec, plan, "running")
        if plan.prepare is not None:
            plan.prepare()
        for argv in plan.commands:
            click.echo(f"[pipeline] sid {' '.join(argv)}")
            _invoke(group, name, argv)
        missing = [p for p in plan.outputs if not p.exists()]
        if missing:
            raise SidError(f"stage {name}: finished but did not write {missing[0]}")
        _write_record(rec, plan, "done")
        ran.append(name)
        last_plan = None
    if not dry_run and last_plan is not None and last_plan.name == "eval":
        _print_saved_table(last_plan)
    return decisions
