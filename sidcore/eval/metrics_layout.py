"""The metrics-JSON layout of ``eval_predictions.metrics.json`` (jax-free, so reports and the CLI
read it without the model layer), and the popularity baseline's ranking."""

from __future__ import annotations

import collections
from typing import Any, Sequence

LAYOUT_KEYS = ("topk", "n_samples", "n_beams", "invalid_prediction_count")
NOT_FAMILIES = ("extra", "popularity_baseline", "stderr")  # dict-valued keys that are not {K: value} tables


def metrics_json(values: dict[str, float], *, topk: Sequence[int], n: int, n_beams: int) -> dict[str, Any]:
    """Group ``{"hr@10": v, "ndcg@10": v, "invalid_prediction_count": c, ...}`` into the reference
    ``eval_predictions.metrics.json`` layout: one ``{K: value}`` table per metric family (``hr``,
    ``ndcg`` first as upstream, then every other family in the order the metrics returned them);
    scalar values other than the invalid count are kept under ``extra``."""
    ks = [k for k in topk if k <= n_beams]
    families: dict[str, dict[str, float]] = {"hr": {}, "ndcg": {}}
    out: dict[str, Any] = {}
    extra: dict[str, float] = {}
    invalid = 0
    for key, v in values.items():
        name, _, k = key.partition("@")
        if k.isdigit():
            if int(k) in ks:
                families.setdefault(name, {})[k] = v
        elif key == "invalid_prediction_count":
            invalid = int(v)
        else:
            extra[key] = v
    out.update(families)
    out.update({"topk": ks, "n_samples": n, "n_beams": n_beams, "invalid_prediction_count": invalid})
    if extra:
        out["extra"] = extra
    return out


def metric_families(metrics: dict[str, Any]) -> list[str]:
    """The ``{K: value}`` families of a metrics-JSON dict, in file order (``hr``, ``ndcg``, ...)."""
    return [k for k, v in metrics.items() if isinstance(v, dict) and k not in NOT_FAMILIES]


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """``{"hr@10": v, ...}`` for every family and K of a metrics-JSON dict (plus ``extra`` scalars)."""
    flat = {f"{fam}@{k}": v for fam in metric_families(metrics) for k, v in metrics[fam].items()}
    flat.update(metrics.get("extra", {}))
    return flat


def flat_stderr(metrics: dict[str, Any]) -> dict[str, float]:
    """``{"hr@10": s.e., ...}`` of a metrics-JSON dict's ``stderr`` tables ({} without them)."""
    return {f"{fam}@{k}": v for fam, table in (metrics.get("stderr") or {}).items() for k, v in table.items()}


def standard_errors(per_row: Sequence[dict[str, float]], families: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{"hr": {"10": s.e.}}``: the standard error of each family@K mean over the rows, from each
    row's own value (population std / sqrt(n); for a hit rate that is the binomial sqrt(p(1-p)/n))."""
    n = len(per_row)
    out: dict[str, dict[str, float]] = {}
    if n == 0:
        return out
    for key in per_row[0]:
        fam, _, k = key.partition("@")
        if fam not in families or not k.isdigit():
            continue
        vals = [float(r[key]) for r in per_row]
        mean = sum(vals) / n
        out.setdefault(fam, {})[k] = (sum((v - mean) ** 2 for v in vals) / n) ** 0.5 / n ** 0.5
    return out


def final_values(metrics: dict[str, Any], timing: dict[str, Any] | None = None,
                 prefix: str = "final/") -> dict[str, float]:
    """Every number of a final eval as flat log keys: ``final/hr@10`` (each family and K, ``extra``
    scalars), ``final/n_samples``, ``final/invalid_prediction_count``, ``final/popularity/hr@10`` (the
    baseline) and ``final/<timing key>`` (``eval_seconds``, ``prompts_per_sec``, ``compiles``, ...)."""
    out = {f"{prefix}{k}": v for k, v in flat_metrics(metrics).items()}
    for key in ("n_samples", "n_beams", "invalid_prediction_count"):
        if key in metrics:
            out[f"{prefix}{key}"] = metrics[key]
    out.update({f"{prefix}stderr/{k}": v for k, v in flat_stderr(metrics).items()})
    pop = metrics.get("popularity_baseline")
    if isinstance(pop, dict):
        out.update({f"{prefix}popularity/{k}": v for k, v in flat_metrics(pop).items()})
        out.update({f"{prefix}popularity/stderr/{k}": v for k, v in flat_stderr(pop).items()})
    out.update({f"{prefix}{k}": v for k, v in (timing or {}).items()})
    return out


def popularity_ranking(train_rows: Sequence[Any], k: int) -> list[str]:
    """The K most frequent SIDs among the training rows' histories and targets (ties by first
    appearance). Counting histories too reproduces the documented baseline of the Industrial test
    split (HR@10 0.078; targets alone give 0.075)."""
    counts = collections.Counter(s for r in train_rows for s in (*r.history_item_sid, r.item_sid))
    return [sid for sid, _ in counts.most_common(k)]


