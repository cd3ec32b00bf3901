"""The final table a run prints: every metric family @K, the standard errors, the popularity
baseline, and the line saying where sid beats it by more than one standard error."""

from __future__ import annotations

from typing import Any

import click

from sidcore.eval.metrics_layout import metric_families


def print_table(metrics: dict[str, Any]) -> None:
    """Every metric family @K on stdout (with the popularity baseline when present)."""
    ks = metrics["topk"]
    click.echo(f"{'':<16}" + "".join(f"{'@' + str(k):>9}" for k in ks))
    pop = metrics.get("popularity_baseline")
    rows = [("sid", metrics, "value")] + [("s.e.", metrics, "stderr")] * ("stderr" in metrics)
    rows += [("popular", pop, "value")] * (pop is not None)
    for label, m, what in rows:
        for name in metric_families(metrics):
            table = m.get(name) if what == "value" else m["stderr"].get(name)
            if not table:
                continue
            vals = "".join(f"{table.get(str(k), float('nan')):>9.4f}" for k in ks)
            click.echo(f"{name.upper().replace('_ITEM', '-it') + ' ' + label:<16}{vals}")
    click.echo(f"n={metrics['n_samples']} beams={metrics['n_beams']} invalid={metrics['invalid_prediction_count']}"
               + ("  (s.e.: standard error of sid's value over the n rows)" if "stderr" in metrics else ""))
    if pop is not None and "stderr" in metrics:
        click.echo(beats_line(metrics, pop))


def beats_line(metrics: dict[str, Any], pop: dict[str, Any]) -> str:
    """One line: at which K sid's HR and NDCG beat the popularity baseline by more than one s.e."""
    parts = []
    for fam in ("hr", "ndcg"):
        if fam not in metrics or fam not in pop:
            continue
        ks = [k for k in metrics[fam] if k in pop[fam]]
        ok = [k for k in ks if metrics[fam][k] - pop[fam][k] > metrics["stderr"][fam][k]]
        parts.append(f"{fam.upper()} at {len(ok)}/{len(ks)} K" + (f" (not @{', @'.join(sorted(set(ks) - set(ok), key=int))})"
                                                                    if len(ok) < len(ks) else ""))
    return "beats popularity by more than 1 s.e.: " + "; ".join(parts)
