"""`sid index stats` and `sid index build` through the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
