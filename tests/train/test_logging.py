"""Run logging: metrics.jsonl always; W&B offline writes a local run and logs no secrets."""

from __future__ import annotations

import json

import attrs
import numpy as np


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
    log.finish()
    recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3, 3]  # step 1, every 2nd, the last, then the eval
    assert recs[0]["train/real_token_fraction"] == 0.5 and recs[0]["train/tokens_per_sec"] == 20.0
    assert recs[-1] == {"step": 3, "eval/loss": 0.7}
    offline = list((tmp_path / "wandb").glob("offline-run-*"))
    assert offline, "W&B offline run directory missing"
    blob = b"".join(p.read_bytes() for p in offline[0].rglob("*") if p.is_file())
    assert b"secret-value-should-not-leak" not in blob
