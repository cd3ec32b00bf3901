"""Nothing silently wrong (issue 11): every input that used to give exit 0 with a wrong result is now
a one-line error naming the file/key, or the correct behaviour; nothing is overwritten on the way.

Runs the real CLI in subprocesses on the bundled sample with the tiny smoke model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke" / "tiny.yaml")
INFO = ROOT / "sidcore/assets/minionerec/info/Industrial_and_Scientific_5_2016-10-2018-11.txt"
TEST_CSV = ROOT / "sidcore/assets/minionerec/test/Industrial_and_Scientific_5_2016-10-2018-11.csv"
pytestmark = pytest.mark.slow


def sid(*args, env=None, timeout=600, cwd=ROOT):
    full = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sidcore.cli", *args], capture_output=True, text=True,
                          env=full, timeout=timeout, cwd=cwd)


def error_line(res) -> str:
    """The one `Error: ...` line (progress lines may come before it), and no traceback."""
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    lines = [x for x in res.stderr.splitlines() if x.startswith("Error: ")]
    assert len(lines) == 1, res.stderr[-2000:]
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(out: Path, *extra: str, env=None):
    return sid("run", "--config", SMOKE, "--run-mode", "train", "--output-dir", str(out), *extra, env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("rel") / "base"
    res = train(out, "train.save_steps=2", "train.save_total_limit=1")
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------ 1. damaged checkpoints


@pytest.mark.parametrize("damage", ["truncate_payload", "bad_record"])
def test_damaged_checkpoint_is_refused_and_kept(trained, tmp_path, damage):
    run = copy_run(trained, tmp_path / "run")
    if damage == "truncate_payload":
        victim = run / "sft_state_last.msgpack"
        victim.write_bytes(victim.read_bytes()[:-10])
    else:
        victim = run / "sft_state_last.meta.json"
        victim.write_text("{")
    before, cfg_before = digest(victim), digest(run / "config.resolved.yaml")
    res = train(run)
    assert res.returncode == 1
    line = error_line(res)
    assert "checkpoint 'last'" in line and "damaged" in line and str(victim) in line
    assert "train.resume_fallback=true" in line
    assert digest(victim) == before and digest(run / "config.resolved.yaml") == cfg_before
    res = sid("run", "--config", SMOKE, "--run-mode", "eval", "--output-dir", str(run))
    assert res.returncode == 1 and "damaged" in error_line(res) and digest(victim) == before
    # opting in: resume from the newest intact checkpoint (step2)
    res = train(run, "train.resume_fallback=true")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming from step2" in res.stderr


# ------------------------------------------------------------------ 2. resume_from_checkpoint in training


def test_resume_from_checkpoint_is_used_by_training(trained, tmp_path):
    res = train(tmp_path / "a", f"train.resume_from_checkpoint={trained}#last", "train.max_steps=5")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "weights, optimizer state and data cursor (step 3) restored" in res.stderr
    summary = json.loads((tmp_path / "a" / "run_summary.json").read_text())
    assert summary["train"]["steps"] == 5
    # a bare params file (reference-port layout) restores weights only
    from flax import serialization

    from sidcore.model.hf_params import unflatten_params

    tree = serialization.msgpack_restore((trained / "sft_state_last.msgpack").read_bytes())
    bare = tmp_path / "port_state.msgpack"
    bare.write_bytes(serialization.msgpack_serialize({"step": 3, "params": unflatten_params(tree["params"])}))
    res = train(tmp_path / "b", f"train.resume_from_checkpoint={bare}", "train.max_steps=1")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "weights restored; fresh optimizer state and data order" in res.stderr
    res = train(tmp_path / "c", f"train.resume_from_checkpoint={tmp_path / 'missing'}")
    assert res.returncode == 1 and "no such file or directory" in error_line(res)
    assert not (tmp_path / "c" / "config.resolved.yaml").exists()


def test_resume_from_an_hf_folder_loads_it_as_the_weights(trained, tmp_path):
    hf = tmp_path / "hf"
    assert sid("export", "hf", str(trained), str(hf)).returncode == 0
    res = train(tmp_path / "h", f"train.resume_from_checkpoint={hf}", "train.max_steps=1")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "is an HF folder: loading it as the model weights" in res.stderr


# ------------------------------------------------------------------ 3. eval without weights


def test_eval_without_weights_is_an_error_unless_asked(tmp_path):
    res = sid("run", "--config", SMOKE, "--run-mode", "eval", "--output-dir", str(tmp_path / "e"))
    assert res.returncode == 1 and "nothing to evaluate" in error_line(res)
    assert "eval.random_weights=true" in error_line(res)
    assert not (tmp_path / "e" / "eval_predictions.metrics.json").exists()
    res = sid("run", "--config", SMOKE, "--run-mode", "eval", "--output-dir", str(tmp_path / "e"),
              "eval.random_weights=true")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "RANDOM weights" in res.stderr


# ------------------------------------------------------------------ 4./5. checkpoint URIs and files


def test_unserved_uri_scheme_is_an_error(trained, tmp_path):
    res = sid("checkpoint", "copy", str(trained), "s3://bucket/x", cwd=tmp_path)
    assert res.returncode == 1
    line = error_line(res)
    assert "no installed store serves 's3://'" in line and "gs://" in line
    assert not (tmp_path / "s3:").exists()
    res = sid("checkpoint", "copy", str(trained), "s3://bucket/x", "--dry-run", cwd=tmp_path)
    assert res.returncode == 1 and not (tmp_path / "s3:").exists()


def test_copy_accepts_checkpoint_files(trained, tmp_path):
    res = sid("checkpoint", "copy", str(trained / "sft_state_last.msgpack"), str(tmp_path / "d1"))
    assert res.returncode == 0, res.stderr
    assert "copied" in res.stdout and (tmp_path / "d1" / "sft_state_last.meta.json").exists()
    bare = tmp_path / "port.msgpack"
    bare.write_bytes((trained / "sft_state_last.msgpack").read_bytes())
    res = sid("checkpoint", "copy", str(bare), str(tmp_path / "d2") + "#imported")
    assert res.returncode == 0, res.stderr
    assert "bare params file" in res.stdout and (tmp_path / "d2" / "sft_state_imported.meta.json").exists()
    res = sid("checkpoint", "copy", str(tmp_path / "nothing"), str(tmp_path / "d3"), "--dry-run")
    assert res.returncode == 1 and "no such file or directory" in error_line(res)


def test_export_of_a_damaged_checkpoint_says_damaged(trained, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    (run / "sft_state_last.msgpack").write_bytes((run / "sft_state_last.msgpack").read_bytes()[:100])
    res = sid("export", "hf", str(run), str(tmp_path / "hf"), "--checkpoint", "last")
    assert res.returncode == 1 and "damaged" in error_line(res) and "sft_state_last.msgpack" in error_line(res)


# ------------------------------------------------------------------ 6./7./8. checks before the first step


def test_use_best_checkpoint_without_best_is_refused_before_training(tmp_path):
    res = sid("run", "--config", SMOKE, "--output-dir", str(tmp_path / "u"), "eval.use_best_checkpoint=true")
    assert res.returncode == 1 and "eval.use_best_checkpoint needs a best checkpoint" in error_line(res)
    assert not (tmp_path / "u").exists()


def test_usage_errors_of_topk_and_calc(trained, tmp_path):
    res = sid("run", "--config", SMOKE, "--output-dir", str(tmp_path / "t"), "eval.topk=[1,100]")
    assert res.returncode == 1 and "eval.topk [100] exceed eval.num_beams=10" in error_line(res)
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps([{"output": "<a_1><b_1><c_1>\n", "predict": ["<a_1><b_1><c_1>"] * 5}]))
    for bad in ("0,-1", "100"):
        res = sid("calc", "--path", str(preds), "--item-path", str(INFO), "--topk", bad)
        assert res.returncode == 2, res.stderr
    res = sid("calc", "--path", str(preds), "--item-path", str(TEST_CSV))
    assert res.returncode == 1 and "not an info file" in error_line(res)
    assert sid("calc", "--path", str(preds), "--item-path", str(INFO)).returncode == 0


def test_prompt_longer_than_buckets_and_bad_output_dir_fail_before_training(tmp_path):
    res = sid("run", "--config", SMOKE, "--output-dir", str(tmp_path / "b"), "eval.prefill_buckets=[32]")
    assert res.returncode == 1 and ("data.eval_max_len: 2560 exceeds the largest eval.prefill_buckets entry (32)"
                                    in error_line(res))  # refused when the config loads
    assert not list((tmp_path / "b").glob("sft_state_*")) and not (tmp_path / "b" / "config.resolved.yaml").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = sid("run", "--config", SMOKE, "--output-dir", str(blocker / "run"))
    assert res.returncode == 1 and f"output_dir {blocker / 'run'}" in error_line(res)


def test_missing_local_base_model_says_no_such_folder(tmp_path):
    res = sid("run", "--config", SMOKE, "--output-dir", str(tmp_path / "m"), f"base_model={tmp_path}/no/model")
    assert res.returncode == 1 and error_line(res).endswith("no such folder")


# ------------------------------------------------------------------ 9. one run per output_dir


def test_second_run_into_one_output_dir_is_refused(tmp_path):
    run = tmp_path / "busy"
    env = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu"}
    first = subprocess.Popen([sys.executable, "-m", "sidcore.cli", "run", "--config", SMOKE, "--run-mode", "train",
                              "train.max_steps=400", "--output-dir", str(run)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (run / ".sid.lock").exists():
            time.sleep(0.2)
        time.sleep(1.0)
        res = train(run)
        assert res.returncode == 1
        line = error_line(res)
        assert f"is in use by pid {first.pid} on host" in line
    finally:
        first.kill()
        first.wait()


# ------------------------------------------------------------------ 10./11. crashes inside a checkpoint write


def load_last_params(run_dir: Path):
    from flax import serialization

    return serialization.msgpack_restore((run_dir / "sft_state_last.msgpack").read_bytes())["params"]


COMMON = ("train.max_steps=4", "train.save_steps=1", "train.save_total_limit=2")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    ref = tmp_path_factory.mktemp("ref") / "ref"
    assert train(ref, *COMMON).returncode == 0
    return ref


@pytest.mark.parametrize("point", ["store.staged:3", "store.uncommitted:2", "store.published:4"])
def test_sigkill_inside_a_checkpoint_write_resumes_bitwise(uninterrupted, tmp_path, point):
    common, ref = COMMON, uninterrupted
    run = tmp_path / "killed"
    res = train(run, *common, env={"SID_FAILPOINT": point})
    assert res.returncode == -9, (res.returncode, res.stderr[-2000:])
    res = train(run, *common)
    assert res.returncode == 0, res.stderr[-3000:]
    assert not list(run.glob(".*.tmp")), "temp files of the killed write are cleaned"
    a, b = load_last_params(ref), load_last_params(run)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()
             if "train/loss" in json.loads(x)]
    assert steps == sorted(set(steps)) == [1, 2, 3, 4], steps  # no step logged twice after the resume
