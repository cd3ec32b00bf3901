"""Run logging: metrics.jsonl always; W&B offline writes a local run and logs no secrets."""

from __future__ import annotations

import json
import time

import attrs
import numpy as np
import pytest


@attrs.frozen
class WandbCfg:
    mode: str = "offline"
    project: str = "sid-test"
    name: str | None = "t"


def test_metrics_jsonl_and_wandb_offline(tmp_path, monkeypatch):
    from sidcore.train.run_logger import RunLogger

    monkeypatch.setenv("WANDB_API_KEY", "secret-value-should-not-leak")
    monkeypatch.setenv("WANDB_SILENT", "true")
    log = RunLogger(tmp_path, wandb_cfg=WandbCfg(), run_config={"seed": 1}, flops_per_token=1.0, every=2)
    log.start(total=3, initial=0, effective=4)
    batch = {"segment_ids": np.array([[1, 1, 0, 0]])}
    for step in (1, 2, 3):
        log.train_step(step, {"loss": 1.0 / step, "grad_norm": 0.5, "tokens": 2.0}, batch, 0.1, lr=1e-3)
    log.eval_step(3, {"eval/loss": 0.7})
    log.end_training()
    log.final({"final/hr@10": 0.25, "final/popularity/hr@10": 0.125})
    log.finish()
    recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3, 3, 3]  # step 1, every 2nd, the last, the eval, final
    assert recs[0]["train/real_token_fraction"] == 0.5 and recs[0]["train/tokens_per_sec"] == 20.0
    assert recs[0]["train/compiled"] == 1 and recs[1]["train/compiled"] == 0 and recs[1]["train/compiles"] == 1
    assert recs[3] == {"step": 3, "eval/loss": 0.7}
    assert recs[4] == {"step": 3, "final/hr@10": 0.25, "final/popularity/hr@10": 0.125}
    stats = log.train_stats()
    assert stats["compiles"] == 1 and stats["timed_steps"] == 2 and stats["final_loss"] == 1.0 / 3
    offline = list((tmp_path / "wandb").glob("offline-run-*"))
    assert offline, "W&B offline run directory missing"
    blob = b"".join(p.read_bytes() for p in offline[0].rglob("*") if p.is_file())
    assert b"secret-value-should-not-leak" not in blob


def test_default_wandb_run_name_and_final_metrics_reach_wandb(tmp_path, monkeypatch):
    """No wandb.name: the run is named <category>-sid-sft-<timestamp>; final/ keys land in the
    offline run (history and summary), logged before wandb.finish()."""
    from sidcore.train.run_logger import RunLogger, default_run_name

    monkeypatch.setenv("WANDB_SILENT", "true")
    name = default_run_name("Office_Products", now=0)
    assert name.startswith("Office_Products-sid-sft-") and len(name.rsplit("-", 2)[-2]) == 8
    log = RunLogger(tmp_path, wandb_cfg=WandbCfg(name=None), run_config={}, flops_per_token=1.0,
                    run_name=name)
    assert log.run_name == name
    log.final({"final/mrr@10": 0.5}, step=0)  # an eval-only run: no training steps
    log.finish({"wall_seconds": 1.5})
    run_file = next((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    blob = run_file.read_bytes()
    for _ in range(60):  # W&B's service may still be flushing the offline file on a loaded machine
        if name.encode() in blob and b"wall_seconds" in blob:
            break
        time.sleep(0.5)
        blob = run_file.read_bytes()
    assert name.encode() in blob and b"final/mrr@10" in blob and b"wall_seconds" in blob
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 0, "final/mrr@10": 0.5}


def test_final_values_carry_every_family_baseline_and_timing():
    from sidcore.eval.metrics_layout import final_values, metrics_json

    m = metrics_json({"hr@1": 0.1, "ndcg@1": 0.1, "mrr@1": 0.2, "invalid_prediction_count": 2, "cov": 0.5},
                     topk=[1], n=10, n_beams=5)
    m["popularity_baseline"] = metrics_json({"hr@1": 0.3, "ndcg@1": 0.3}, topk=[1], n=10, n_beams=5)
    vals = final_values(m, {"eval_seconds": 2.0, "compiles": 1})
    assert vals == {"final/hr@1": 0.1, "final/ndcg@1": 0.1, "final/mrr@1": 0.2, "final/cov": 0.5,
                    "final/n_samples": 10, "final/n_beams": 5, "final/invalid_prediction_count": 2,
                    "final/popularity/hr@1": 0.3, "final/popularity/ndcg@1": 0.3,
                    "final/eval_seconds": 2.0, "final/compiles": 1}


def test_progress_logs_one_line_per_n_when_not_a_tty(monkeypatch, caplog):
    import logging

    from sidcore.progress import Progress

    monkeypatch.setenv("SID_PROGRESS", "log")
    with caplog.at_level(logging.INFO, logger="sidcore.progress"):
        with Progress(10, desc="decode", unit="prompt", log_every=4) as p:
            for _ in range(5):
                p.update(2, loss=1.23456)
    lines = [r.getMessage() for r in caplog.records]
    assert [ln.split()[1] for ln in lines] == ["2/10", "6/10", "10/10"]  # first, every >= 4, the end
    assert "prompt/s" in lines[-1] and "eta" in lines[-1] and "loss=1.235" in lines[-1]


def test_progress_bar_on_a_tty_keeps_log_lines_on_their_own_row(monkeypatch, capsys):
    """Bar mode: a log record written while the bar is open goes through tqdm.write, i.e. on its own line."""
    import io
    import logging

    from sidcore.progress import Progress

    monkeypatch.setenv("SID_PROGRESS", "bar")
    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    logger = logging.getLogger("sidcore")
    handler = logging.StreamHandler(buf)
    logger.addHandler(handler)
    try:
        p = Progress(3, desc="train", unit="step")
        p.update(1)
        logging.getLogger("sidcore.train").warning("eval line")
        p.update(2)
        p.close()
    finally:
        logger.removeHandler(handler)
    out = buf.getvalue()
    assert "\neval line\n" in out.replace("\r", "\n") and "3/3" in out


def test_standard_errors_by_hand():
    from sidcore.eval.metrics_layout import final_values, metrics_json, standard_errors

    # 4 rows: HR@1 hits 1/4 (binomial s.e. sqrt(.25*.75/4)); NDCG@2 gains 1, 1/log2(3), 0, 0
    g = 1 / np.log2(3)
    per_row = [{"hr@1": 1.0, "ndcg@2": 1.0}, {"hr@1": 0.0, "ndcg@2": g},
               {"hr@1": 0.0, "ndcg@2": 0.0}, {"hr@1": 0.0, "ndcg@2": 0.0}]
    se = standard_errors(per_row, ["hr", "ndcg"])
    assert se["hr"]["1"] == pytest.approx((0.25 * 0.75 / 4) ** 0.5, rel=1e-12)
    assert se["ndcg"]["2"] == pytest.approx(np.std([1.0, g, 0.0, 0.0]) / 2, rel=1e-12)
    m = metrics_json({"hr@1": 0.25}, topk=[1], n=4, n_beams=2)
    m["stderr"] = {"hr": {"1": se["hr"]["1"]}}
    assert final_values(m)["final/stderr/hr@1"] == se["hr"]["1"]
    from sidcore.eval.metrics_layout import metric_families

    assert metric_families(m) == ["hr", "ndcg"]  # the stderr tables are not a metric family
