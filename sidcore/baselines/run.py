"""``sid baseline <model>``: data -> training -> a run folder `sid report` reads and the ``sasrec``
reward loads.

The folder holds ``config.resolved.yaml`` (``baseline`` options, data, seed), ``metrics.jsonl`` (one
record per epoch: ``train/loss``, ``eval/hr@K`` on the selection split), ``eval_predictions.metrics.json``
(full-ranking test HR/NDCG with standard errors, sid's metrics layout), and the checkpoint
(`sidcore.baselines.checkpoint`). Every file is written atomically; the checkpoint record last.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from sidcore.baselines.config import BaselineConfig
from sidcore.files import atomic_write

__all__ = ["run_baseline"]


def _popularity(data: dict[str, Any], topk: list[int]) -> dict[str, Any]:
    """Item-level most-popular ranking of the test targets, in the metrics layout."""
    import numpy as np

    from sidcore.baselines.losses import metrics_from_ranks
    from sidcore.eval.metrics_layout import metrics_json, standard_errors

    item_num = int(data["item_num"])
    position = np.full(item_num, item_num, np.int64)  # never-seen items rank after every seen one
    order = np.asarray(data["popularity"], np.int64)
    position[order] = np.arange(len(order))
    means, rows = metrics_from_ranks(position[data["test"].targets], topk)
    out = metrics_json(means, topk=topk, n=len(rows), n_beams=item_num)
    out["stderr"] = standard_errors(rows, ("hr", "ndcg"))
    return out


def run_baseline(cfg: BaselineConfig, *, data_dir: str, category: str, out_dir: str | Path, train_split: str,
                 test_histories: bool, select: str) -> dict[str, Any]:
    """Train and write the run folder; returns ``{"test": {metric: value}, "record": path, ...}``."""
    from sidcore.baselines.checkpoint import save_checkpoint
    from sidcore.baselines.data import load_splits
    from sidcore.baselines.models import flat_params
    from sidcore.baselines.train import train_baseline
    from sidcore.eval.metrics_layout import metrics_json, standard_errors

    data = load_splits(data_dir, category, train_split=train_split, test_histories=test_histories, select=select,
                       seq_len=cfg.seq_len)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    resolved = {"run_mode": "baseline", "seed": cfg.seed, "output_dir": str(out),
                "baseline": {k: v for k, v in cfg.to_dict().items() if k != "seed"},
                "data": {"data_dir": data_dir, "category": category, "train_split": train_split,
                         "test_histories": test_histories, "select": select}}
    atomic_write(out / "config.resolved.yaml", yaml.safe_dump(resolved, sort_keys=False))
    records: list[str] = []

    def on_record(rec: dict[str, Any]) -> None:
        records.append(json.dumps(rec))
        atomic_write(out / "metrics.jsonl", "\n".join(records) + "\n", fsync=False)

    model, info = train_baseline(cfg, train=data["train"], select=data["select"], test=data["test"],
                                 item_num=int(data["item_num"]), on_record=on_record)
    test_means, test_rows = info["test"]
    metrics = metrics_json(test_means, topk=info["topk"], n=len(test_rows), n_beams=int(data["item_num"]))
    metrics["stderr"] = standard_errors(test_rows, ("hr", "ndcg"))
    metrics["extra"] = {"full_ranking_items": int(data["item_num"]), "test_rows_total": int(data["n_test_rows"])}
    metrics["popularity_baseline"] = _popularity(data, info["topk"])
    atomic_write(out / "eval_predictions.metrics.json", json.dumps(metrics, indent=1) + "\n")
    select_means = info["select"][0] if info["select"] else None
    meta = {"model": cfg.model, "options": cfg.to_dict(), "item_num": int(data["item_num"]),
            "item_sids": data["item_sids"], "data": data["description"], "best_epoch": info["best_epoch"],
            "epochs_run": info["epochs_run"], "steps": info["steps"], "select_split": select,
            "select_metrics": select_means, "test_metrics": test_means, "train_seconds": round(info["seconds"], 2)}
    record = save_checkpoint(out, flat_params(model), meta)
    return {"test": test_means, "select": select_means, "record": record, "description": data["description"],
            "best_epoch": info["best_epoch"], "epochs_run": info["epochs_run"], "seconds": info["seconds"],
            "n_test": len(test_rows)}
