"""Bad input to `sid run` fails early with one `Error:` line naming the culprit, and exit code 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke" / "tiny.yaml")
pytestmark = pytest.mark.slow


def sid(*args):
    env = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "sidcore.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=ROOT)


def check(res, *needles):
    assert res.returncode == 1, res.stderr[-2000:]
    # progress lines ("[sid] ...") may precede it; the error itself is one line, last, no traceback
    lines = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith(("[sid] ", "WARNING"))]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1] == lines[0] and "Traceback" not in res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def hf_without_sids(tmp_path_factory):
    """An HF folder (tiny random Qwen2 + the plain Qwen2.5 tokenizer: no SID tokens)."""
    from flax import nnx

    from sidcore.data.tokenizer import load_tokenizer
    from sidcore.model import Qwen2Config, Qwen2ForCausalLM, export_hf

    tok = load_tokenizer("bundled")
    cfg = Qwen2Config.tiny(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1)
    path = tmp_path_factory.mktemp("hf") / "plain"
    export_hf(Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(0)), cfg, path)
    tok.save_pretrained(path)
    return path


def test_eval_of_checkpoint_without_sid_tokens(hf_without_sids, tmp_path):
    check(sid("run", "--config", SMOKE, "--run-mode", "eval", f"base_model={hf_without_sids}",
              "--output-dir", str(tmp_path / "o")), "tokenizer lacks the SID tokens", str(hf_without_sids))


def test_empty_test_file(tmp_path):
    src = ROOT / "sidcore/assets/minionerec/test/Industrial_and_Scientific_5_2016-10-2018-11.csv"
    empty = tmp_path / "empty.csv"
    empty.write_text(src.read_text().splitlines()[0] + "\n")
    check(sid("run", "--config", SMOKE, f"data.test_file={empty}", "--output-dir", str(tmp_path / "o")),
          str(empty))


def test_num_beams_larger_than_catalog(tmp_path):
    check(sid("run", "--config", SMOKE, "eval.num_beams=5000", "eval.topk=[1]", "--output-dir", str(tmp_path / "o")),
          "num_beams=5000", "3670")


def test_batch_math_not_divisible(tmp_path):
    check(sid("run", "--config", SMOKE, "train.global_batch_size=12", "--output-dir", str(tmp_path / "o")),
          "train.global_batch_size=12", "multiple")


def test_corrupt_and_mismatched_checkpoints(tmp_path):
    bad = tmp_path / "sft_state_last.msgpack"
    bad.write_bytes(b"\x00not msgpack")
    check(sid("run", "--config", SMOKE, "--run-mode", "eval", f"train.resume_from_checkpoint={bad}",
              "--output-dir", str(tmp_path / "o")), str(bad))
    run = tmp_path / "r"
    ok = sid("run", "--config", SMOKE, "--run-mode", "train", "train.max_steps=1", "--output-dir", str(run))
    assert ok.returncode == 0, ok.stderr[-2000:]
    check(sid("run", "--config", SMOKE, "--run-mode", "eval", f"train.resume_from_checkpoint={run}#last",
              "model.overrides.hidden_size=48", "--output-dir", str(tmp_path / "o2")), "different model shape")


def test_non_finite_loss_stops_with_last_good_checkpoint(tmp_path):
    run = tmp_path / "nan"
    res = sid("run", "--config", SMOKE, "--run-mode", "train", "train.max_steps=5", "train.warmup_steps=0",
              "train.learning_rate=1e30", "train.max_grad_norm=0", "train.save_steps=1", "--output-dir", str(run))
    check(res, "non-finite loss at step")
    assert (run / "sft_state_step1.meta.json").exists()
    assert not (run / "sft_state_last.meta.json").exists()
