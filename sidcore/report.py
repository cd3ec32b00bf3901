"""``sid report``: PNG plots comparing runs (train loss, learning rate, eval metrics) from metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sidcore.errors import DataError


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


def write_report(run_dirs: list[Path], out_dir: Path) -> list[Path]:
    """One PNG per metric group; each run is one line labelled by its directory name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {d.name: read_metrics(d) for d in run_dirs}
    keys = sorted({k for recs in runs.values() for r in recs for k in r if k != "step"})
    groups = {
        "loss": [k for k in keys if k in ("train/loss", "eval/loss")],
        "learning_rate": [k for k in keys if k == "train/learning_rate"],
        "eval_metrics": [k for k in keys if k.startswith("eval/") and ("hr@" in k or "ndcg@" in k)],
        "throughput": [k for k in keys if k == "train/tokens_per_sec"],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for group, gkeys in groups.items():
        if not gkeys:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for run, recs in runs.items():
            for k in gkeys:
                pts = [(r["step"], r[k]) for r in recs if k in r and r[k] is not None]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, marker="." if len(pts) < 50 else None, label=f"{run} {k}")
        ax.set_xlabel("optimizer step")
        ax.set_title(group)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        path = out_dir / f"{group}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
