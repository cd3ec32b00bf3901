"""`sid run` end to end on the bundled sample (tiny model, CPU): run-dir contents, eval-only reuse,
resume after a kill, preemption exit code, and a 2-process jax.distributed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke" / "tiny.yaml")
pytestmark = pytest.mark.slow


def sid(*args, env=None, timeout=600):
    full = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sidcore.cli", *args], capture_output=True, text=True,
                          env=full, timeout=timeout, cwd=ROOT)


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def load_params(run_dir, name="last"):
    from flax import serialization

    tree = serialization.msgpack_restore((Path(run_dir) / f"sft_state_{name}.msgpack").read_bytes())
    return tree["params"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "smoke"
    res = sid("run", "--config", SMOKE, "--output-dir", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def test_run_dir_contents(smoke_run):
    out, res = smoke_run
    for f in ("config.resolved.yaml", "plugins.json", "metrics.jsonl", "run_summary.json",
              "eval_predictions.json", "eval_predictions.metrics.json", "sft_state_last.msgpack",
              "sft_state_last.meta.json", "tokenizer.json"):
        assert (out / f).exists(), f
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["train"]["steps"] == 3 and summary["token_extension"]["new_vocab_size"] == 152225
    recs = json.loads((out / "eval_predictions.json").read_text())
    assert len(recs) == 8 and all(len(r["predict"]) == 10 for r in recs)
    catalog = {line.split("\t")[0] for line in
               (ROOT / "sidcore/assets/minionerec/info/Industrial_and_Scientific_5_2016-10-2018-11.txt")
               .read_text().splitlines()}
    assert all(p in catalog for r in recs for p in r["predict"])  # trie decoder: only catalog items
    assert all(len(set(r["predict"])) == 10 for r in recs)
    metrics = json.loads((out / "eval_predictions.metrics.json").read_text())
    assert metrics["n_samples"] == 8 and metrics["topk"] == [1, 5, 10]
    assert metrics["invalid_prediction_count"] == 0
    assert "popularity_baseline" in metrics
    assert set(metrics["hr_item"]) == {"1", "5", "10"}  # item-level (collision-aware) variants
    assert "HR sid" in res.stdout and "HR popular" in res.stdout and "HR s.e." in res.stdout
    assert "beats popularity by more than 1 s.e.: HR at" in res.stdout
    # standard errors by hand from the predictions: binomial for HR, per-row std / sqrt(n) for NDCG
    n = len(recs)
    for k in (1, 5, 10):
        hits = [r["output"].strip() in r["predict"][:k] for r in recs]
        p = sum(hits) / n
        assert metrics["stderr"]["hr"][str(k)] == pytest.approx((p * (1 - p) / n) ** 0.5, rel=1e-9, abs=1e-12)
        gains = [1 / np.log2(r["predict"][:k].index(r["output"].strip()) + 2) if h else 0.0
                 for r, h in zip(recs, hits)]
        assert metrics["stderr"]["ndcg"][str(k)] == pytest.approx(np.std(gains) / n ** 0.5, rel=1e-6, abs=1e-12)
        assert metrics["ndcg"][str(k)] == pytest.approx(np.mean(gains), rel=1e-6, abs=1e-12)
    losses = [r["train/loss"] for r in read_jsonl(out / "metrics.jsonl") if "train/loss" in r]
    assert len(losses) == 3 and all(np.isfinite(losses))
    # every number of the terminal table is in metrics.jsonl (and so in W&B): families, baseline, timing
    final = {k: v for r in read_jsonl(out / "metrics.jsonl") for k, v in r.items() if k.startswith("final/")}
    for fam in ("hr", "ndcg", "hr_item", "ndcg_item"):
        for k in (1, 5, 10):
            assert final[f"final/{fam}@{k}"] == metrics[fam][str(k)]
            assert final[f"final/popularity/{fam}@{k}"] == metrics["popularity_baseline"][fam][str(k)]
            assert final[f"final/stderr/{fam}@{k}"] == metrics["stderr"][fam][str(k)]
            assert final[f"final/popularity/stderr/{fam}@{k}"] == metrics["popularity_baseline"]["stderr"][fam][str(k)]
    assert final["final/n_samples"] == 8 and "final/prompts_per_sec" in final and "final/wall_seconds" in final
    assert summary["train"]["telemetry"]["compiles"] >= 1 and summary["train"]["telemetry"]["final_loss"] > 0
    assert all(r["input"] in r["prompt"] and r["prompt"].endswith("### Response:\n") for r in recs)  # full prompt


def test_eval_only_from_run_dir_reproduces_predictions(smoke_run, tmp_path):
    out, _ = smoke_run
    res = sid("run", "--config", SMOKE, "--run-mode", "eval", "--output-dir", str(tmp_path / "ev"),
              f"train.resume_from_checkpoint={out}#last")
    assert res.returncode == 0, res.stderr[-3000:]
    a = json.loads((out / "eval_predictions.json").read_text())
    b = json.loads((tmp_path / "ev" / "eval_predictions.json").read_text())
    assert [r["predict"] for r in a] == [r["predict"] for r in b]
    # an eval-only run logs its final metrics too (so `sid report` accepts it)
    recs = read_jsonl(tmp_path / "ev" / "metrics.jsonl")
    assert recs[0]["step"] == 0 and "final/hr@10" in recs[0] and "final/popularity/hr@10" in recs[0]


def test_resume_after_kill_is_bitwise_equal(tmp_path):
    ref = tmp_path / "ref"
    common = ["--config", SMOKE, "--run-mode", "train", "train.max_steps=6", "train.save_steps=1",
              "train.save_total_limit=2"]
    assert sid("run", *common, "--output-dir", str(ref)).returncode == 0
    run = tmp_path / "killed"
    env = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-m", "sidcore.cli", "run", *common, "--output-dir", str(run)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    target = 2 + int(np.random.default_rng().integers(0, 3))  # kill after a random step in 2..4
    while time.time() < deadline and not (run / f"sft_state_step{target}.meta.json").exists():
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert not (run / "sft_state_last.meta.json").exists()
    res = sid("run", *common, "--output-dir", str(run))
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = load_params(ref), load_params(run)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def test_sigterm_saves_and_exits_75(tmp_path):
    run = tmp_path / "pre"
    env = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-m", "sidcore.cli", "run", "--config", SMOKE, "--run-mode", "train",
                             "train.max_steps=200", "--output-dir", str(run)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        m = run / "metrics.jsonl"
        if m.exists() and m.read_text().count("\n") >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 75, err[-2000:]
    assert "checkpoint 'last' written" in err
    meta = json.loads((run / "sft_state_last.meta.json").read_text())
    assert 2 <= meta["meta"]["step"] < 200 if "meta" in meta else True


def test_two_processes_match_one(tmp_path):
    common = ["--config", SMOKE, "--run-mode", "train_eval", "train.max_steps=3", "jax.mesh_shape=2,1,1"]
    one = sid("run", *common, "--output-dir", str(tmp_path / "one"),
              env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert one.returncode == 0, one.stderr[-3000:]
    two = sid("run", *common, "--launcher", "local_multiprocess", "--output-dir", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    la = [r["train/loss"] for r in read_jsonl(tmp_path / "one" / "metrics.jsonl") if "train/loss" in r]
    lb = [r["train/loss"] for r in read_jsonl(tmp_path / "two" / "metrics.jsonl") if "train/loss" in r]
    assert len(la) == 3
    np.testing.assert_allclose(la, lb, atol=1e-5)
    ma = json.loads((tmp_path / "one" / "eval_predictions.metrics.json").read_text())
    mb = json.loads((tmp_path / "two" / "eval_predictions.metrics.json").read_text())
    for key in ("hr", "ndcg", "n_samples", "invalid_prediction_count"):
        assert ma[key] == pytest.approx(mb[key]), key
    summary = json.loads((tmp_path / "two" / "run_summary.json").read_text())
    assert summary["devices"]["processes"] == 2


def test_calc_matches_metrics_json(smoke_run):
    out, _ = smoke_run
    info = ROOT / "sidcore/assets/minionerec/info/Industrial_and_Scientific_5_2016-10-2018-11.txt"
    res = sid("calc", "--path", str(out / "eval_predictions.json"), "--item-path", str(info), "--topk", "1,5,10",
              "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    want = json.loads((out / "eval_predictions.metrics.json").read_text())
    for key in ("hr", "ndcg", "topk", "n_samples", "n_beams", "invalid_prediction_count"):
        assert got[key] == want[key], key


@pytest.mark.torch
def test_export_hf_loads_in_transformers(smoke_run, tmp_path):
    out, _ = smoke_run
    res = sid("export", "hf", str(out), str(tmp_path / "hf"))
    assert res.returncode == 0, res.stderr[-2000:]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sidcore.model import load_hf

    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert len(tok) == 152225 and tok.convert_tokens_to_ids("<a_104>") == 151665
    gen = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert gen["eos_token_id"] == cfg["eos_token_id"] == tok.eos_token_id and cfg["pad_token_id"] == tok.pad_token_id
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = tok("### Response:\n<a_1><b_2><c_3>\n", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        want = hf(torch.tensor([ids])).logits.numpy()
    ours, _ = load_hf(tmp_path / "hf")
    got = np.asarray(ours(np.array([ids], np.int32)))
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_report_writes_pngs(smoke_run, tmp_path):
    out, _ = smoke_run
    res = sid("report", str(out), str(out), "--out", str(tmp_path / "rep"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "rep" / "loss.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    (group,) = summary["groups"]  # the same run twice: one experiment, flagged as repeats of one seed
    assert group["metrics"]["hr@10"]["n"] == 2 and group["metrics"]["hr@10"]["std"] == 0.0
    assert "share a seed" in group["warning"]
    assert "| hr@10 |" in res.stdout


def test_pure_beam_run_decodes_free_text(tmp_path):
    cfg = str(ROOT / "configs" / "smoke" / "tiny_pure_beam.yaml")
    res = sid("run", "--config", cfg, "--output-dir", str(tmp_path / "pb"), "decoder.fixed_length=false",
              "decoder.max_new_tokens=4")
    assert res.returncode == 0, res.stderr[-3000:]
    recs = json.loads((tmp_path / "pb" / "eval_predictions.json").read_text())
    assert len(recs) == 8 and all(len(r["predict"]) == 10 for r in recs)
    metrics = json.loads((tmp_path / "pb" / "eval_predictions.metrics.json").read_text())
    assert metrics["n_beams"] == 10 and metrics["invalid_prediction_count"] >= 0
