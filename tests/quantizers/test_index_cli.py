"""`sid index stats` and `sid index build` through the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from sidcore.data.minionerec import bundled_data_dir, read_index, split_paths

CAT = "Industrial_and_Scientific"
INDEX = split_paths(bundled_data_dir(), CAT)["index"]


def sid(*args):
    env = {**os.environ, "SID_STRICT_PLUGINS": "1"}
    return subprocess.run([sys.executable, "-m", "sidcore.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


def test_stats_golden_text_and_json():
    out = sid("index", "stats", INDEX)
    assert out.returncode == 0, out.stderr
    for line in ("items           3686", "unique SIDs     3670", "collision rate  0.434 %",
                 "groups          15 (max size 3)", "codes used      48 / 256 / 256"):
        assert line in out.stdout
    data = json.loads(sid("index", "stats", INDEX, "--json").stdout)
    assert data["items"] == 3686 and data["unique_sids"] == 3670 and data["max_group_size"] == 3


def test_build_from_the_command_line(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "e.npy", rng.normal(size=(3686, 8)).astype(np.float32))
    out = sid("index", "build", "--embeddings", tmp_path / "e.npy", "--data-dir", bundled_data_dir(),
              "--category", CAT, "--out", tmp_path / "out", "--dedup", "variable", "--sinkhorn-rounds", "2",
              "codebook_sizes=[8,8,4]", "quantizer.max_iter=20")
    assert out.returncode == 0, out.stderr
    assert "collision rate  0.000 %" in out.stdout
    index = read_index(split_paths(tmp_path / "out", CAT)["index"])
    assert len(index) == 3686 and {t[1] for v in index.values() for t in v} <= set("abcd")
    report = json.loads((tmp_path / "out" / "index" / f"{CAT}.build.json").read_text())
    assert report["options"]["max_iter"] == 20 and report["sinkhorn"]["rounds_max"] == 2


def test_build_errors_are_one_line(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((3686, 4), np.float32))
    base = ["index", "build", "--embeddings", tmp_path / "e.npy", "--data-dir", bundled_data_dir(),
            "--category", CAT, "--out", tmp_path / "o"]
    out = sid(*base, "codebook_size=[4]")
    assert out.returncode == 1 and out.stderr.strip().count("\n") == 0, out.stderr
    assert "quantizer[rq_kmeans].codebook_size: unknown key (did you mean: codebook_sizes?)" in out.stderr
    out = sid(*base, "--quantizer", "rq_kmean")
    assert out.returncode == 1 and "unknown quantizer 'rq_kmean'" in out.stderr
    out = sid(*base[:-2], "--category", "Nope", "--out", tmp_path / "o")
    assert out.returncode == 1 and "no index.json or item.json for category 'Nope'" in out.stderr


def test_a_freshly_built_index_trains_decodes_and_scores_through_sid_run(tmp_path):
    """End to end: embeddings -> `sid index build` (mixed 3/4-level SIDs) -> `sid run` on the new
    folder (SFT on the rewritten CSVs, trie decoding over the new catalog, HR/NDCG)."""
    rng = np.random.default_rng(1)
    np.save(tmp_path / "e.npy", rng.normal(size=(3686, 8)).astype(np.float32))
    out = sid("index", "build", "--embeddings", tmp_path / "e.npy", "--data-dir", bundled_data_dir(),
              "--category", CAT, "--out", tmp_path / "data", "--dedup", "variable",
              "codebook_sizes=[16,8,8]", "quantizer.max_iter=10")
    assert out.returncode == 0, out.stderr
    index = read_index(split_paths(tmp_path / "data", CAT)["index"])
    assert {len(v) for v in index.values()} <= {3, 4} and any(len(v) == 4 for v in index.values())
    run = sid("run", "--config", Path(__file__).resolve().parents[2] / "configs/smoke/tiny.yaml", "--output-dir", tmp_path / "run",
              f"data.data_dir={tmp_path / 'data'}")
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "eval_predictions.metrics.json").read_text())
    assert metrics["n_samples"] == 8 and set(metrics["hr"]) == {"1", "5", "10"}
    preds = json.loads((tmp_path / "run" / "eval_predictions.json").read_text())
    sids = {"".join(v) for v in index.values()}
    assert all(p in sids for r in preds for p in r["predict"])  # every prediction is a new-catalog SID
