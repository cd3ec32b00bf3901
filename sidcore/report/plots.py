"""``sid report``'s figures, drawn to be read (and pasted into a paper):

- ``loss.png``: train loss solid, validation loss dashed, one colour per run;
- ``learning_rate.png``;
- ``eval_metrics.png``: periodic decoding eval, one panel per metric family, one line per K;
- ``final_metrics.png``: the final eval's families against K, the popularity baseline dotted;
- ``throughput.png``: real tokens/s and step time, steps that compiled left out.

Runs are labelled by the config keys that differ between them (``optimizer=muon_local, seed=2``);
when nothing differs, by their directory name.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sidcore.config.loading import flatten
from sidcore.errors import DataError
from sidcore.eval.metrics_layout import metric_families
from sidcore.report.stats import metric_order, short_key, short_value, read_metrics, read_run_config

LOCATION_KEYS = ("output_dir", "checkpoint_uri", "wandb.", "launcher.", "train.resume_from_checkpoint")
MARKERS = "os^vDP*X"
TITLES = {"hr": "HR@K", "ndcg": "NDCG@K", "hr_item": "HR@K (item level)", "ndcg_item": "NDCG@K (item level)"}


def run_labels(run_dirs: list[Path]) -> list[str]:
    """One legend label per run: ``key=value`` of the resolved-config keys that differ (seed included)."""
    flats = []
    for d in run_dirs:
        try:
            flats.append(flatten(read_run_config(d)))
        except DataError:
            flats.append({})
    keys = sorted({k for f in flats for k in f if not k.startswith(LOCATION_KEYS)})
    differing = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]
    swapped = {k[: -len(".name")] for k in differing if k.endswith(".name")}
    differing = [k for k in differing if k.endswith(".name") or k.rpartition(".")[0] not in swapped]
    labels = [", ".join(f"{short_key(k)}={short_value(f.get(k))}" for k in differing) or d.name
              for d, f in zip(run_dirs, flats)]
    if len(set(labels)) < len(labels):  # same config: the directory tells them apart
        labels = [f"{lab} ({d.name})" if labels.count(lab) > 1 else lab for lab, d in zip(labels, run_dirs)]
    return labels


def _series(recs: list[dict[str, Any]], key: str, *, skip_compiled: bool = False) -> tuple[list, list]:
    pts = [(r["step"], r[key]) for r in recs if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
           and not (skip_compiled and r.get("train/compiled", r["step"] == 1))]
    return ([p[0] for p in pts], [p[1] for p in pts]) if pts else ([], [])


def _final_metrics(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "eval_predictions.metrics.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def _style(ax: Any, *, xlabel: str, ylabel: str, title: str | None = None) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def _legend(fig: Any, ax: Any, n: int) -> None:
    if n <= 4:
        ax.legend(fontsize=8, frameon=False)
    else:  # many runs: one legend below the panels
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=8, frameon=False, loc="lower center", ncol=min(3, n))
        fig.subplots_adjust(bottom=0.25)


def _families(recs: list[dict[str, Any]], prefix: str) -> dict[str, list[int]]:
    fams: dict[str, set[int]] = {}
    for r in recs:
        for key in r:
            if key.startswith(prefix) and "@" in key:
                fam, _, k = key[len(prefix):].partition("@")
                if k.isdigit() and "/" not in fam:
                    fams.setdefault(fam, set()).add(int(k))
    order = sorted(fams, key=lambda f: metric_order(f + "@0"))
    return {f: sorted(fams[f]) for f in order}


def write_report(run_dirs: list[Path], out_dir: Path) -> list[Path]:
    """The PNGs of the module docstring (a figure without data is not written)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [read_metrics(d) for d in run_dirs]
    labels = run_labels(run_dirs)
    colours = [plt.get_cmap("tab10")(i % 10) for i in range(len(runs))]
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = out_dir / name
        fig.savefig(path, dpi=150, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    # loss: train solid, eval dashed, a run's two curves share its colour
    if any(_series(r, "train/loss")[0] or _series(r, "eval/loss")[0] for r in runs):
        fig, ax = plt.subplots(figsize=(7, 4))
        for recs, lab, c in zip(runs, labels, colours):
            xs, ys = _series(recs, "train/loss")
            if xs:
                ax.plot(xs, ys, color=c, lw=1.4, label=f"{lab} train")
            xs, ys = _series(recs, "eval/loss")
            if xs:
                ax.plot(xs, ys, color=c, lw=1.4, ls="--", marker="o", ms=3, label=f"{lab} validation")
        _style(ax, xlabel="optimizer step", ylabel="cross-entropy loss (nats / label token)", title="Loss")
        _legend(fig, ax, 2 * len(runs))
        save(fig, "loss.png")

    if any(_series(r, "train/learning_rate")[0] for r in runs):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for recs, lab, c in zip(runs, labels, colours):
            xs, ys = _series(recs, "train/learning_rate")
            if xs:
                ax.plot(xs, ys, color=c, lw=1.4, label=lab)
        _style(ax, xlabel="optimizer step", ylabel="learning rate", title="Learning-rate schedule")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        _legend(fig, ax, len(runs))
        save(fig, "learning_rate.png")

    fams = _families([r for recs in runs for r in recs], "eval/")
    if fams:
        fig, axes = _panels(plt, len(fams))
        for ax, (fam, ks) in zip(axes, fams.items()):
            for recs, lab, c in zip(runs, labels, colours):
                for j, k in enumerate(ks):
                    xs, ys = _series(recs, f"eval/{fam}@{k}")
                    if xs:
                        ax.plot(xs, ys, color=c, lw=1.2, marker=MARKERS[j % len(MARKERS)], ms=4,
                                alpha=0.4 + 0.6 * (j + 1) / len(ks))
            _style(ax, xlabel="optimizer step", ylabel=TITLES.get(fam, f"{fam}@K"), title=TITLES.get(fam, fam))
            ax.set_ylim(bottom=0)
        all_ks = sorted({k for ks in fams.values() for k in ks})
        _legend_runs_and_ks(fig, labels, colours, all_ks)
        save(fig, "eval_metrics.png")

    finals = [_final_metrics(d) for d in run_dirs]
    fams = {f: None for m in finals if m for f in metric_families(m)}
    if fams:
        fig, axes = _panels(plt, len(fams))
        for ax, fam in zip(axes, fams):
            base_drawn = False
            for m, lab, c in zip(finals, labels, colours):
                if not m or not m.get(fam):
                    continue
                ks = sorted(m[fam], key=int)
                ax.plot([int(k) for k in ks], [m[fam][k] for k in ks], color=c, marker="o", ms=4, lw=1.4, label=lab)
                pop = (m.get("popularity_baseline") or {}).get(fam)
                if pop and not base_drawn:
                    pks = sorted(pop, key=int)
                    ax.plot([int(k) for k in pks], [pop[k] for k in pks], color="0.4", ls=":", marker="x", ms=4,
                            lw=1.2, label="popularity baseline")
                    base_drawn = True
            ax.set_xscale("log")
            all_k = sorted({int(k) for m in finals if m and m.get(fam) for k in m[fam]})
            ax.set_xticks(all_k, [str(k) for k in all_k])
            ax.minorticks_off()
            ax.set_ylim(bottom=0)
            _style(ax, xlabel="K", ylabel=TITLES.get(fam, f"{fam}@K"), title=TITLES.get(fam, fam))
        handles, lbls = axes[0].get_legend_handles_labels()
        fig.legend(handles, lbls, fontsize=8, frameon=False, loc="lower center", ncol=min(3, len(lbls)))
        fig.subplots_adjust(bottom=0.22 if len(axes) <= 2 else 0.12)
        fig.suptitle("Final evaluation")
        save(fig, "final_metrics.png")

    if any(_series(r, "train/tokens_per_sec", skip_compiled=True)[0] for r in runs):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
        for recs, lab, c in zip(runs, labels, colours):
            xs, ys = _series(recs, "train/tokens_per_sec", skip_compiled=True)
            a1.plot(xs, ys, color=c, lw=1.2, marker="." if len(xs) < 50 else None, label=lab)
            xs, ys = _series(recs, "train/step_time_sec", skip_compiled=True)
            a2.plot(xs, [1000 * y for y in ys], color=c, lw=1.2, marker="." if len(xs) < 50 else None, label=lab)
        _style(a1, xlabel="optimizer step", ylabel="real (non-pad) tokens / s", title="Training throughput")
        _style(a2, xlabel="optimizer step", ylabel="step time (ms)", title="Step time")
        a1.set_ylim(bottom=0)
        a2.set_ylim(bottom=0)
        fig.text(0.5, -0.08, "steps that compiled (new batch shape, e.g. step 1) are left out", ha="center",
                 fontsize=8, color="0.35")
        _legend(fig, a1, len(runs))
        save(fig, "throughput.png")
    return written


def _panels(plt: Any, n: int) -> tuple[Any, list[Any]]:
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    flat = [a for row in axes for a in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    fig.subplots_adjust(hspace=0.45, wspace=0.3)
    return fig, flat[:n]


def _legend_runs_and_ks(fig: Any, labels: list[str], colours: list[Any], ks: list[int]) -> None:
    """One legend below the panels: runs by colour, K by marker."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=2) for c in colours]
    handles += [Line2D([], [], color="0.35", marker=MARKERS[j % len(MARKERS)], ls="none") for j in range(len(ks))]
    names = list(labels) + [f"K={k}" for k in ks]
    fig.legend(handles, names, fontsize=8, frameon=False, loc="lower center", ncol=min(len(names), 6),
               bbox_to_anchor=(0.5, -0.02))
    fig.subplots_adjust(bottom=0.16 if len(fig.axes) > 2 else 0.25)
