"""`sid report`'s seed summary: grouping by config less seed/location, mean ± 95 % t-interval (hand-computed)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import yaml

from sidcore.errors import DataError
from sidcore.run.report import mean_ci, summarize, t975, write_summary


def make_run(root, name, *, seed, optimizer, hr10, ndcg10, with_eval=True):
    d = root / name
    d.mkdir()
    opt = {"name": optimizer, "b1": 0.9} if optimizer == "adamw" else {"name": optimizer, "b1": None, "ns_steps": 5}
    cfg = {"seed": seed, "output_dir": str(d), "checkpoint_uri": str(d), "run_mode": "train_eval",
           "optimizer": opt, "train": {"learning_rate": 3e-4, "resume_from_checkpoint": None},
           "wandb": {"mode": "disabled", "name": name}, "launcher": {"name": "local"}}
    (d / "config.resolved.yaml").write_text(yaml.safe_dump(cfg))
    if with_eval:
        (d / "eval_predictions.metrics.json").write_text(json.dumps(
            {"hr": {"1": hr10 / 2, "10": hr10}, "ndcg": {"1": hr10 / 2, "10": ndcg10}, "topk": [1, 10],
             "n_samples": 100, "n_beams": 10, "invalid_prediction_count": 0}))
    return d


def test_t_quantiles_and_interval_by_hand():
    assert t975(1) == 12.706 and t975(2) == 4.303 and t975(30) == 2.042
    assert 2.000 < t975(50) < 2.021 and 1.960 < t975(1000) < 1.980
    st = mean_ci([0.1, 0.2, 0.3])  # mean 0.2, sample std 0.1, half width 4.303 * 0.1 / sqrt(3)
    assert st["n"] == 3 and math.isclose(st["mean"], 0.2) and math.isclose(st["std"], 0.1)
    assert math.isclose(st["ci95"], 4.303 * 0.1 / math.sqrt(3))
    assert mean_ci([0.4]) == {"n": 1, "mean": 0.4, "std": None, "ci95": None}
    with pytest.raises(ValueError):
        t975(0)


def test_runs_group_by_config_less_seed_and_location(tmp_path):
    runs = [make_run(tmp_path, f"adamw_s{s}", seed=s, optimizer="adamw", hr10=h, ndcg10=h / 2)
            for s, h in ((1, 0.10), (2, 0.20), (3, 0.30))]
    runs.append(make_run(tmp_path, "muon_s1", seed=1, optimizer="optax_muon", hr10=0.15, ndcg10=0.07))
    summary = summarize(runs)
    assert summary["differing_keys"] == ["optimizer.name"]
    adamw, muon = summary["groups"]
    assert adamw["label"] == 'optimizer.name="adamw"' and adamw["seeds"] == [1, 2, 3]
    assert math.isclose(adamw["metrics"]["hr@10"]["mean"], 0.2)
    assert math.isclose(adamw["metrics"]["hr@10"]["ci95"], 4.303 * 0.1 / math.sqrt(3))
    assert math.isclose(adamw["metrics"]["ndcg@10"]["std"], 0.05)
    assert muon["metrics"]["hr@10"] == {"n": 1, "mean": 0.15, "std": None, "ci95": None}
    assert "warning" not in adamw


def test_summary_files_and_cli_table(tmp_path):
    runs = [make_run(tmp_path, f"r{s}", seed=s, optimizer="adamw", hr10=h, ndcg10=h / 2)
            for s, h in ((1, 0.10), (2, 0.20), (3, 0.30))]
    runs.append(make_run(tmp_path, "train_only", seed=4, optimizer="adamw", hr10=0, ndcg10=0, with_eval=False))
    md, js = write_summary(runs, tmp_path / "rep")
    data = json.loads(js.read_text())
    assert data["skipped_without_eval"] == [str(runs[-1])] and len(data["groups"]) == 1
    text = md.read_text()
    assert "| hr@10 | 0.2000 ± 0.2484 (n=3) [0.1000] |" in text
    assert write_summary([runs[-1]], tmp_path / "none") == []  # nothing to summarise: no files


def test_missing_or_corrupt_metrics_file_is_a_one_line_error(tmp_path):
    d = make_run(tmp_path, "bad", seed=1, optimizer="adamw", hr10=0.1, ndcg10=0.05)
    (d / "eval_predictions.metrics.json").write_text("{not json")
    with pytest.raises(DataError, match=r"eval_predictions.metrics.json:1: not valid JSON"):
        summarize([d])
    (d / "config.resolved.yaml").unlink()
    with pytest.raises(DataError, match="config.resolved.yaml: missing"):
        summarize([d])
    res = subprocess.run([sys.executable, "-m", "sidcore.cli", "report", str(d), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "Traceback" not in res.stderr
