"""`sid report`'s seed summary: grouping by config less seed/location, mean ± 95 % t-interval (hand-computed)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import yaml

from sidcore.errors import DataError
from sidcore.report.stats import mean_ci, summarize, t975, write_summary


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
    assert adamw["label"] == "optimizer=adamw" and adamw["seeds"] == [1, 2, 3]
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


def add_logs(d, *, losses, step_times, pop_hr10=None):
    recs = [{"step": i + 1, "train/loss": loss, "train/step_time_sec": t, "train/tokens_per_sec": 100 / t,
             "train/learning_rate": 1e-3, "train/compiled": int(i == 0)}
            for i, (loss, t) in enumerate(zip(losses, step_times))]
    recs.append({"step": len(losses), "eval/hr@1": 0.1, "eval/hr@10": 0.2, "eval/ndcg@10": 0.1, "eval/mrr@10": 0.05})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    if pop_hr10 is not None:
        m = json.loads((d / "eval_predictions.metrics.json").read_text())
        m["popularity_baseline"] = {"hr": {"1": 0.01, "10": pop_hr10},
                                    "ndcg": {"1": 0.01, "10": pop_hr10 / 2}}
        m["mrr"] = {"1": 0.05, "10": 0.07}  # a plugin's metric family
        (d / "eval_predictions.metrics.json").write_text(json.dumps(m))


def test_summary_names_experiments_by_what_differs_with_baseline_loss_and_step_time(tmp_path):
    a = make_run(tmp_path, "a", seed=1, optimizer="adamw", hr10=0.2, ndcg10=0.1)
    b = make_run(tmp_path, "b", seed=1, optimizer="muon_local", hr10=0.3, ndcg10=0.15)
    add_logs(a, losses=[3.0, 2.0, 1.5], step_times=[9.0, 0.2, 0.4], pop_hr10=0.12)
    add_logs(b, losses=[3.0, 1.0], step_times=[9.0, 0.3], pop_hr10=0.12)
    md, _ = write_summary([a, b], tmp_path / "rep")
    text = md.read_text()
    assert "| metric | optimizer=adamw | optimizer=muon_local | popularity |" in text
    assert "| hr@10 | 0.2000 (n=1) | 0.3000 (n=1) | 0.1200 |" in text
    assert "| mrr@10 | 0.0700 (n=1) | 0.0700 (n=1) | – |" in text  # plugin families reach the report
    assert "| final train loss | 1.5000 (n=1) | 1.0000 (n=1) | – |" in text
    assert "| step time (s, median) | 0.4 (n=1) | 0.3 (n=1) | – |" in text  # the compile step is left out
    assert "group 1" not in text


def test_report_plots_one_panel_per_family_and_labels_by_what_differs(tmp_path):
    pytest.importorskip("matplotlib")
    from sidcore.report.plots import _families, _series, run_labels, write_report

    a = make_run(tmp_path, "a", seed=1, optimizer="adamw", hr10=0.2, ndcg10=0.1)
    b = make_run(tmp_path, "b", seed=2, optimizer="adamw", hr10=0.3, ndcg10=0.15)
    for d in (a, b):
        add_logs(d, losses=[3.0, 2.0, 1.5], step_times=[9.0, 0.2, 0.4], pop_hr10=0.1)
    assert run_labels([a, b]) == ["seed=1", "seed=2"]
    assert run_labels([a, a]) == ["a (a)", "a (a)"]  # nothing differs: directory names
    recs = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    assert _series(recs, "train/step_time_sec", skip_compiled=True) == ([2, 3], [0.2, 0.4])
    assert list(_families(recs, "eval/")) == ["hr", "ndcg", "mrr"]
    written = write_report([a, b], tmp_path / "plots")
    assert sorted(p.name for p in written) == ["eval_metrics.png", "final_metrics.png", "learning_rate.png",
                                               "loss.png", "throughput.png"]
    assert all(p.stat().st_size > 5000 for p in written)
