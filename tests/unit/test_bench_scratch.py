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


def _common():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_common_scratch", ROOT / "bench" / "common.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tree(folder):
    return sorted((str(p.relative_to(folder)), p.read_text() if p.is_file() else None) for p in folder.rglob("*"))


def test_scratch_dir_removes_only_the_folder_it_made(tmp_path):
    """`common.scratch_dir` (every bench that deletes goes through it: rl_vs_hf, profile_rl,
    checkpoint_rss): the parent, the user's files in it and folders named like the scratch prefix
    survive, on a normal exit and when the run fails inside."""
    scratch_dir = _common().scratch_dir
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "sid-rl-bench-old").mkdir()  # a user folder with the bench's prefix
    (tmp_path / "sid-rl-bench-old" / "run.txt").write_text("mine too")
    before = _tree(tmp_path)
    with scratch_dir("sid-rl-bench-", parent=tmp_path) as work:
        assert work.parent == tmp_path and work.name.startswith("sid-rl-bench-") and not any(work.iterdir())
        (work / "model").mkdir()
        (work / "model" / "weights.bin").write_text("x")
    assert not work.exists() and _tree(tmp_path) == before
    with pytest.raises(RuntimeError), scratch_dir("sid-rl-bench-", parent=tmp_path) as work:
        (work / "trace").mkdir()
        raise RuntimeError("the run failed")
    assert not work.exists() and _tree(tmp_path) == before
    fresh = tmp_path / "new" / "deeper"  # a parent that did not exist is made, and kept
    with scratch_dir("x-", parent=fresh) as work:
        pass
    assert fresh.is_dir() and not any(fresh.iterdir())
