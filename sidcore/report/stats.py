"""``sid report``: compare runs.

- ``summary.md`` / ``summary.json``: the final eval metrics (``eval_predictions.metrics.json``) of each
  run, and runs grouped by their resolved config less the seed and run-location keys: per group and
  metric the mean, sample standard deviation and 95 % confidence interval over seeds (Student t).
- PNG plots (`sidcore.report.plots`): loss, learning rate, periodic eval and final metrics per
  family, throughput, from ``metrics.jsonl`` and the final metrics JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from sidcore.config.loading import flatten
from sidcore.errors import DataError
from sidcore.eval.metrics_layout import flat_metrics
from sidcore.files import atomic_write

# Keys that differ between seeds of one experiment without changing it.
UNGROUPED_KEYS = ("seed", "output_dir", "checkpoint_uri", "wandb", "launcher")
UNGROUPED_TRAIN_KEYS = ("resume_from_checkpoint",)

# Two-sided 95 % Student t quantiles t(0.975, df) for df = 1..30, then a few anchors (interpolated).
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042]
_T975_TAIL = [(30, 2.042), (40, 2.021), (60, 2.000), (120, 1.980)]


def t975(df: int) -> float:
    """t quantile for a two-sided 95 % interval with `df` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError("df must be >= 1")
    if df <= 30:
        return _T975[df - 1]
    for (d0, t0), (d1, t1) in zip(_T975_TAIL, _T975_TAIL[1:]):
        if df <= d1:  # linear in 1/df between anchors
            w = (1 / d0 - 1 / df) / (1 / d0 - 1 / d1)
            return t0 + w * (t1 - t0)
    return 1.960 + (1.980 - 1.960) * 120 / df


def mean_ci(values: list[float]) -> dict[str, Any]:
    """``{"n", "mean", "std", "ci95"}``: sample std (n-1) and the t-interval half width (None if n < 2)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"n": n, "mean": mean, "std": None, "ci95": None}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return {"n": n, "mean": mean, "std": std, "ci95": t975(n - 1) * std / math.sqrt(n)}


def read_final_metrics(run_dir: Path) -> dict[str, float]:
    """``{"hr@10": .., "ndcg@10": .., "hr_item@10": .., ...}`` of a run's eval_predictions.metrics.json."""
    path = run_dir / "eval_predictions.metrics.json"
    if not path.exists():
        raise DataError(f"{path}: missing (run the eval, e.g. --run-mode eval, before summarising)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON") from None
    return {name: float(v) for name, v in flat_metrics(data).items()
            if "@" in name and isinstance(v, (int, float))}


def read_baseline(run_dir: Path) -> dict[str, float]:
    """The popularity baseline's ``{"hr@10": ..}`` of a run's final eval ({} without one)."""
    path = run_dir / "eval_predictions.metrics.json"
    if not path.exists():
        return {}
    try:
        pop = json.loads(path.read_text(encoding="utf-8")).get("popularity_baseline")
    except json.JSONDecodeError:
        return {}
    return {k: float(v) for k, v in flat_metrics(pop).items() if "@" in k} if isinstance(pop, dict) else {}


def read_train_numbers(run_dir: Path) -> dict[str, float]:
    """``final_loss`` (last logged train loss) and ``step_time_sec`` (median over the steps that did
    not compile; step 1 is left out for logs without the ``train/compiled`` flag) from metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return {}
    recs = read_metrics(run_dir)
    train = [r for r in recs if isinstance(r.get("train/loss"), (int, float))]
    if not train:
        return {}
    timed = sorted(r["train/step_time_sec"] for r in train if "train/step_time_sec" in r
                   and not r.get("train/compiled", r["step"] == 1))
    out = {"final_loss": float(train[-1]["train/loss"])}
    if timed:
        out["step_time_sec"] = float(timed[len(timed) // 2])
    return out


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The run's ``config.resolved.yaml`` as a plain dict."""
    path = run_dir / "config.resolved.yaml"
    if not path.exists():
        raise DataError(f"{path}: missing (is this a sid run directory?)")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def experiment_key(cfg: dict[str, Any]) -> dict[str, Any]:
    """A resolved config less the keys that vary between seeds of one experiment."""
    key = {k: v for k, v in cfg.items() if k not in UNGROUPED_KEYS}
    if isinstance(key.get("train"), dict):
        key["train"] = {k: v for k, v in key["train"].items() if k not in UNGROUPED_TRAIN_KEYS}
    return key


def summarize(run_dirs: list[Path]) -> dict[str, Any]:
    """Per-run final metrics and per-experiment mean / std / 95 % CI over seeds."""
    runs, groups = [], []
    keys: list[dict[str, Any]] = []
    for d in run_dirs:
        cfg = read_run_config(d)
        key = experiment_key(cfg)
        runs.append({"run": str(d), "seed": cfg.get("seed"), "metrics": read_final_metrics(d),
                     "baseline": read_baseline(d), "train": read_train_numbers(d)})
        if key in keys:
            groups[keys.index(key)]["runs"].append(len(runs) - 1)
        else:
            keys.append(key)
            groups.append({"runs": [len(runs) - 1]})
    flats = [flatten(k) for k in keys]
    differing = sorted({k for f in flats for k in f if len({json.dumps(g.get(k), sort_keys=True) for g in flats}) > 1})
    # a component swapped for another (`optimizer.name` differs) is labelled by its name alone
    swapped = {k[: -len(".name")] for k in differing if k.endswith(".name")}
    differing = [k for k in differing if k.endswith(".name") or k.rpartition(".")[0] not in swapped]
    for g, flat in zip(groups, flats):
        members = [runs[i] for i in g["runs"]]
        g["label"] = ", ".join(f"{short_key(k)}={short_value(flat.get(k))}" for k in differing) or "all runs"
        g["seeds"] = [r["seed"] for r in members]
        g["metrics"] = _stats([r["metrics"] for r in members])
        g["baseline"] = _stats([r["baseline"] for r in members])
        g["train"] = _stats([r["train"] for r in members])
        g["runs"] = [r["run"] for r in members]
        if len(set(g["seeds"])) < len(g["seeds"]):
            g["warning"] = "some runs share a seed (repeats, not independent seeds)"
    return {"runs": runs, "groups": groups, "differing_keys": differing}


def _stats(per_run: list[dict[str, float]]) -> dict[str, Any]:
    """mean / std / CI of every key all runs have."""
    if not per_run or not all(per_run):
        return {}
    names = sorted(set.intersection(*(set(r) for r in per_run)))
    return {m: mean_ci([r[m] for r in per_run]) for m in names}


def short_key(key: str) -> str:
    """``optimizer.name`` -> ``optimizer`` (a swapped component is named by its section)."""
    return key[: -len(".name")] if key.endswith(".name") else key


def short_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _cell(st: dict[str, Any] | None, fmt: str = ".4f") -> str:
    if st is None:
        return "–"
    if st["ci95"] is None:
        return f"{st['mean']:{fmt}} (n=1)"
    return f"{st['mean']:{fmt}} ± {st['ci95']:{fmt}} (n={st['n']}) [{st['std']:{fmt}}]"


def metric_order(name: str) -> tuple:
    """hr, ndcg, hr_item, ndcg_item first (upstream's headline order), then other families by name."""
    base, _, k = name.partition("@")
    known = ("hr", "ndcg", "hr_item", "ndcg_item")
    return (known.index(base) if base in known else len(known), base, int(k) if k.isdigit() else 0)


def format_summary(summary: dict[str, Any]) -> str:
    """Markdown: one column per experiment (named by what differs), ``mean ± ci95 (n)`` per metric,
    the popularity baseline beside them, then the final train loss and step time."""
    groups = summary["groups"]
    lines = ["# Run summary", ""]
    for g in groups:
        seeds = ", ".join(str(s) for s in g["seeds"])
        lines.append(f"- **{g['label']}**: {len(g['runs'])} run(s), seeds {seeds}"
                     + (f" — {g['warning']}" if g.get("warning") else ""))
    lines += ["", "Mean ± half-width of the 95 % t-interval over the experiment's runs (n); std in brackets. "
              "`popularity`: the most-popular-items baseline on the same rows (first experiment's runs).", ""]
    names = sorted({m for g in groups for m in g["metrics"]}, key=metric_order)
    baseline = next((g["baseline"] for g in groups if g.get("baseline")), {})
    head = [g["label"] for g in groups] + (["popularity"] if baseline else [])
    lines.append("| metric | " + " | ".join(head) + " |")
    lines.append("|---|" + "---|" * len(head))
    for m in names:
        cells = [_cell(g["metrics"].get(m)) for g in groups]
        if baseline:
            cells.append(f"{baseline[m]['mean']:.4f}" if m in baseline else "–")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for key, title, fmt in (("final_loss", "final train loss", ".4f"), ("step_time_sec", "step time (s, median)", ".4g")):
        if any(key in g.get("train", {}) for g in groups):
            cells = [_cell(g.get("train", {}).get(key), fmt) for g in groups] + (["–"] if baseline else [])
            lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        raise DataError(f"{path}: no metrics.jsonl (is this a sid run directory?)")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            raise DataError(f"{path}:{i}: not a JSON line") from None
    return out


def write_summary(run_dirs: list[Path], out_dir: Path) -> list[Path]:
    """``summary.md`` and ``summary.json`` for the runs that have final eval metrics (none: nothing)."""

    with_eval = [d for d in run_dirs if (d / "eval_predictions.metrics.json").exists()]
    if not with_eval:
        return []
    summary = summarize(with_eval)
    summary["skipped_without_eval"] = [str(d) for d in run_dirs if d not in with_eval]
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "summary.md", out_dir / "summary.json"
    atomic_write(md, format_summary(summary))
    atomic_write(js, json.dumps(summary, indent=2) + "\n")
    return [md, js]
