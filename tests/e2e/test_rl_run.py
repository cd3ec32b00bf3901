"""`sid run --run-mode rl` end to end (issue 13 contract): start weights named as for SFT, RL
telemetry in metrics.jsonl, then the constrained-beam eval of the RL weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def sid(*args):
    env = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "sidcore.cli", *args], capture_output=True, text=True, env=env,
                          timeout=900, cwd=ROOT)


def test_sft_then_rl_from_the_sft_checkpoint(tmp_path):
    sft = tmp_path / "sft"
    res = sid("run", "--config", "configs/smoke/tiny.yaml", "--run-mode", "train", "--output-dir", str(sft))
    assert res.returncode == 0, res.stderr[-3000:]
    rl = tmp_path / "rl"
    res = sid("run", "--config", "configs/smoke/tiny_rl.yaml", "--output-dir", str(rl),
              f"train.resume_from_checkpoint={sft}#last")
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"rl: start weights from {sft}#last" in res.stderr
    recs = [json.loads(x) for x in (rl / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "rl/reward_mean" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all("rl/reward/rule_mean" in r and "rl/reward/ranking_mean" in r and "rl/kl_p99" in r for r in steps)
    summary = json.loads((rl / "run_summary.json").read_text())
    assert summary["rl"]["n_prompts"] > 0 and summary["eval"]["n_samples"] == 8
    assert (rl / "sft_state_last.meta.json").exists() or any(rl.glob("*state_last*.meta.json"))
    # a damaged RL checkpoint is refused like an SFT one (never silently restarted and overwritten)
    last = rl / "sft_state_last.msgpack"
    last.write_bytes(last.read_bytes()[:-10])
    res = sid("run", "--config", "configs/smoke/tiny_rl.yaml", "--output-dir", str(rl))
    assert res.returncode == 1 and "damaged" in res.stderr and str(last) in res.stderr
    assert "Traceback" not in res.stderr


def test_rl_with_an_unknown_reward_is_a_config_error(tmp_path):
    res = sid("run", "--config", "configs/smoke/tiny_rl.yaml", "--output-dir", str(tmp_path / "x"),
              "rl.rewards=[{name: rulez}]")
    assert res.returncode == 1 and "unknown reward 'rulez'" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x").exists()


def test_rl_with_dynamic_sampling_add_gt_accumulation_and_valid_eval(tmp_path):
    """Issue 22: upstream's dynamic_sampling and add_gt, gradient accumulation and the RL eval on the
    valid split, through the CLI on the tiny model."""
    rl = tmp_path / "rl"
    res = sid("run", "--config", "configs/smoke/tiny_rl.yaml", "--output-dir", str(rl), "rl.rollout=sample",
              "rl.dynamic_sampling=true", "rl.add_gt=true", "rl.gradient_accumulation_steps=2", "rl.eval_steps=0.5",
              "rl.eval_max_prompts=6", "rl.max_steps=2", "rl.bind_targets=prompt")
    assert res.returncode == 0, res.stderr[-3000:]
    recs = [json.loads(x) for x in (rl / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "rl/reward_mean" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["rl/hit@G"] == 1.0 and r["rl/completion_length"] > 0 and "rl/token_diversity" in r for r in steps)
    evals = [r for r in recs if "eval/loss" in r]
    assert [r["step"] for r in evals] == [1, 2] and all("eval/rewards/rule" in r for r in evals)
