"""`bench/checkpoint_rss.py` deletes only the scratch folder it made: a `--dir` holding the user's files
(here, one of them named like a mode's folder) is left exactly as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_checkpoint_rss_bench_removes_only_its_own_scratch_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "msgpack").mkdir()  # a user folder with a mode's name: the old bench removed it
    (tmp_path / "msgpack" / "run.txt").write_text("mine too")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "checkpoint_rss.py"), "--gb", "0.06",
                          "--modes", "msgpack", "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert '"mode": "msgpack"' in res.stdout
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "msgpack" / "run.txt").read_text() == "mine too"
