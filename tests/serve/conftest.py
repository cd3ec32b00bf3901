"""A tiny trained run (the smoke config, CPU, ~15 s) shared by the serving tests, and helpers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke" / "tiny.yaml")
TEST_CSV = ROOT / "sidcore/assets/minionerec/test/Industrial_and_Scientific_5_2016-10-2018-11.csv"
BEAMS, TOP_K, BATCH = 10, 5, 4


def sid(*args, env=None, timeout=600, **kw):
    full = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu", "SID_PROGRESS": "log", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sidcore.cli", *args], capture_output=True, text=True, env=full,
                          timeout=timeout, cwd=ROOT, **kw)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The smoke run: 3 train steps, then eval on 8 test rows (eval_predictions.json = the eval decoder)."""
    out = tmp_path_factory.mktemp("serve") / "run"
    res = sid("run", "--config", SMOKE, "--output-dir", str(out), "eval.batch_size=4", "eval.num_beams=10")
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def eval_rows(tiny_run):
    """The eval's test rows: (history SIDs, the eval decoder's ranked SIDs)."""
    recs = json.loads((tiny_run / "eval_predictions.json").read_text())
    return [(re.findall(r"(?:<[a-z]_\d+>)+", r["input"]), r["predict"]) for r in recs]


@pytest.fixture(scope="session")
def loaded(tiny_run):
    from sidcore.plugins import load_plugins
    from sidcore.run.compile_cache import enable_compile_cache
    from sidcore.serve.load import load

    out = load(str(tiny_run), load_plugins())
    enable_compile_cache(out.cfg.jax.compile_cache)  # as the commands do: one compile per shape, not per test
    return out


@pytest.fixture(scope="session")
def recommender(loaded):
    from sidcore.serve.engine import Recommender

    return Recommender(loaded, num_beams=BEAMS, top_k=TOP_K, batch_sizes=[BATCH])
