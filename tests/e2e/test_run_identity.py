"""A run is what its record says (issue 19): run identity, the export rule, checks before the first
write, dry runs that refuse what the real run refuses, and signals in every phase.

Each case asserts the exit code, the one ``Error:`` line, and that nothing that was there before
changed (a hash of the whole folder before and after). Real CLI in subprocesses, tiny smoke model.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke" / "tiny.yaml")
pytestmark = pytest.mark.slow


def sid(*args, env=None, timeout=600):
    full = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sidcore.cli", *args], capture_output=True, text=True,
                          env=full, timeout=timeout, cwd=ROOT)


def one_error(res) -> str:
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    lines = [x for x in res.stderr.splitlines() if x.startswith("Error: ")]
    assert len(lines) == 1, res.stderr[-2000:]
    return lines[0]


def folder_digest(path: Path) -> str:
    """Every file below `path` (names and bytes): equal digests = nothing changed."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ident") / "run"
    res = sid("run", "--config", SMOKE, "--output-dir", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    return out


# ---------------------------------------------------------------------------------------- identity
@pytest.mark.parametrize("extra, named", [
    (["seed=7", "train.learning_rate=0.01"], ["seed: 42 there, 7 now", "train.learning_rate: 0.001 there, 0.01 now"]),
    (["train.trainable=sid_rows"], ['train.trainable: "all" there, "sid_rows" now']),
    (["--optimizer", "optax_muon"], ['optimizer.name: "adamw" there, "optax_muon" now']),
    (["data.sample_train=32"], ["data.sample_train: 64 there, 32 now"]),
])
def test_resume_with_other_settings_is_refused_and_changes_nothing(trained, extra, named):
    before = folder_digest(trained)
    res = sid("run", "--config", SMOKE, "--output-dir", str(trained), *extra)
    assert res.returncode == 1
    line = one_error(res)
    assert "trained with other settings" in line and "train.resume_from_checkpoint=" in line, line
    for text in named:
        assert text in line, line
    assert folder_digest(trained) == before


def test_stage_mismatch_is_refused_both_ways(trained, tmp_path):
    before = folder_digest(trained)
    res = sid("run", "--config", SMOKE, "--output-dir", str(trained), "--run-mode", "rl", "rl.batch_size=16",
              "rl.num_generations=4", "rl.max_steps=1")
    assert res.returncode == 1 and "is an SFT checkpoint and this is an RL run" in one_error(res)
    assert folder_digest(trained) == before
    # an RL checkpoint in the folder (its record says stage rl) is never taken as SFT state
    rl_dir = tmp_path / "rl"
    rl_dir.mkdir()
    for p in trained.iterdir():
        (rl_dir / p.name).write_bytes(p.read_bytes())
    rec = json.loads((rl_dir / "sft_state_last.meta.json").read_text())
    rec["meta"]["stage"] = "rl"
    (rl_dir / "sft_state_last.meta.json").write_text(json.dumps(rec))
    before = folder_digest(rl_dir)
    res = sid("run", "--config", SMOKE, "--output-dir", str(rl_dir))
    assert res.returncode == 1 and "is an RL checkpoint and this is an SFT run" in one_error(res)
    assert folder_digest(rl_dir) == before


def test_rerun_of_a_finished_run_says_so_and_keeps_one_final_block(trained, tmp_path):
    run = tmp_path / "again"
    run.mkdir()
    for p in trained.iterdir():
        (run / p.name).write_bytes(p.read_bytes())
    res = sid("run", "--config", SMOKE, "--output-dir", str(run), "eval.batch_size=8")  # eval keys may differ
    assert res.returncode == 0, res.stderr[-2000:]
    assert "nothing left to train (checkpoint" in res.stderr and "at step 3 of 3)" in res.stderr
    finals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()
              if any(k.startswith("final/") for k in json.loads(x))]
    keys = [k for rec in finals for k in rec if k.startswith("final/")]
    assert len(keys) == len(set(keys)), "a second final/ block was appended"
    # train.resume_from_checkpoint of a finished run with the same settings: said, not silent
    res = sid("run", "--config", SMOKE, "--output-dir", str(tmp_path / "from"),
              f"train.resume_from_checkpoint={trained}#last")
    assert res.returncode == 0 and "nothing left to train" in res.stderr, res.stderr[-2000:]
    # ... with another optimizer: its weights only, and the log says why
    res = sid("run", "--config", SMOKE, "--output-dir", str(tmp_path / "from2"), "--optimizer", "optax_muon",
              f"train.resume_from_checkpoint={trained}#last")
    assert res.returncode == 0 and "fresh optimizer state and data order" in res.stderr
    assert 'optimizer.name: "adamw" there, "optax_muon" now' in res.stderr


def test_lock_covers_a_shared_checkpoint_store(tmp_path):
    ckpt = tmp_path / "shared_ckpt"
    ckpt.mkdir()
    with open(ckpt / ".sid.lock", "a+") as fh:  # another run holds the store
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        res = sid("run", "--config", SMOKE, "--output-dir", str(tmp_path / "b"), f"checkpoint_uri={ckpt}")
    assert res.returncode == 1 and f"{ckpt} is in use" in one_error(res)
    assert not (tmp_path / "b").exists()  # the failed start left no folder


# ------------------------------------------------------------------------------- before first write
def test_failed_start_leaves_no_folder_and_keeps_run_files(trained, tmp_path):
    new = tmp_path / "new" / "deeper"
    res = sid("run", "--config", SMOKE, "--output-dir", str(new), "eval.prefill_buckets=[16]")
    assert res.returncode == 1 and "prefill_buckets" in one_error(res)
    assert not (tmp_path / "new").exists()
    before = folder_digest(trained)
    res = sid("run", "--config", SMOKE, "--output-dir", str(trained), "--run-mode", "rl", "rl.batch_size=30",
              "rl.num_generations=4")
    assert res.returncode == 1
    one_error(res)
    assert folder_digest(trained) == before


@pytest.mark.parametrize("extra, message", [
    (["jax.mesh_shape=garbage"], "mesh_shape 'garbage'"),
    (["jax.mesh_shape=2,2,2"], "needs 8 devices, have 1"),
    (["train.global_batch_size=12"], "train.global_batch_size=12 is not a multiple"),
    (["checkpoint_uri=s3://bucket/x"], "no installed store serves 's3://'"),
    (["--run-mode", "rl", "rl.batch_size=30", "rl.num_generations=4"], "rl.batch_size=30 is not a multiple"),
    (["seed=7"], "trained with other settings"),
])
def test_dry_run_refuses_what_the_real_run_refuses(trained, tmp_path, extra, message):
    out = str(trained) if "seed=7" in extra else str(tmp_path / "dry")
    before = folder_digest(trained)
    res = sid("run", "--config", SMOKE, "--output-dir", out, "--dry-run", *extra)
    assert res.returncode != 0 and message in one_error(res)
    assert not (tmp_path / "dry").exists() and folder_digest(trained) == before
    ok = sid("run", "--config", SMOKE, "--output-dir", str(tmp_path / "dry"), "--dry-run")
    assert ok.returncode == 0 and "dry run: checks passed" in ok.stdout and not (tmp_path / "dry").exists()


# ---------------------------------------------------------------------------------------- export
def test_export_never_deletes_what_it_did_not_write(trained, tmp_path):
    parent = tmp_path / "p"
    parent.mkdir()
    run = parent / "run"
    run.mkdir()
    for p in trained.iterdir():
        (run / p.name).write_bytes(p.read_bytes())
    (parent / "other_run").mkdir()
    (parent / "other_run" / "keep.txt").write_text("mine")
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "notes.txt").write_text("mine")
    cases = [(run, "is the run directory"), (run / "hf", "is inside the run directory"),
             (parent, "holds the run directory"), (unrelated, "exists and is not empty")]
    before = folder_digest(tmp_path)
    for out, message in cases:
        for flags in ([], ["--overwrite"]):
            res = sid("export", "hf", str(run), str(out), *flags)
            assert res.returncode == 2, (out, flags, res.stderr[-1000:])
            line = one_error(res)
            assert (message if not (flags and message.startswith("exists")) else "not an earlier sid export") \
                in line, line
    assert folder_digest(tmp_path) == before
    out = tmp_path / "hf"
    beside = folder_digest(parent)
    assert sid("export", "hf", str(run), str(out)).returncode == 0 and (out / ".sid-export").is_file()
    assert sid("export", "hf", str(run), str(out)).returncode == 2  # exists: only with --overwrite
    first = (out / "model.safetensors").read_bytes()
    res = sid("export", "hf", str(run), str(out), "--overwrite")
    assert res.returncode == 0 and (out / "model.safetensors").read_bytes() == first
    assert folder_digest(parent) == beside  # the run and its neighbours: untouched by the exports


# --------------------------------------------------------------------------------------- signals
@pytest.mark.parametrize("point", ["job.startup", "eval.batch"])
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_signals_outside_training_exit_75_with_a_message(trained, tmp_path, point, signame):
    out = tmp_path / "sig"
    args = ["run", "--config", SMOKE, "--output-dir", str(out)]
    if point == "eval.batch":
        args += ["--run-mode", "eval", f"train.resume_from_checkpoint={trained}#last"]
    res = sid(*args, env={"SID_FAILPOINT": f"{point}:1:{signame}"})
    assert res.returncode == 75, res.stderr[-2000:]
    assert f"stopped by {signame}" in one_error(res)
    if point == "job.startup":
        assert not out.exists()
    else:  # decoding was stopped: no eval output half-written (or written at all)
        assert not (out / "eval_predictions.json").exists() and not (out / "run_summary.json").exists()


# ------------------------------------------------------------------------- README's own sequence
def _readme_runs() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    runs = []
    for block in re.findall(r"```\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(".venv/bin/sid run") or line.startswith("sid run") or " && .venv/bin/sid run" in line:
                runs.append(shlex.split(line[line.index("sid run") + len("sid run"):]))
    return runs


def test_readme_run_commands_never_resume_each_other_with_other_settings():
    """Every `sid run` in README, in README's order, in one checkout: a command whose checkpoint folder
    an earlier command trained must have the same settings (else the real sequence would stop)."""
    from sidcore.cli import run_cmd
    from sidcore.config import loading
    from sidcore.plugins import load_plugins
    from sidcore.run.assemble import store_uri
    from sidcore.run.identity import run_settings

    registry = load_plugins().registry
    runs = _readme_runs()
    assert len(runs) >= 5, runs
    trained: dict[str, tuple[str, dict]] = {}
    for argv in runs:
        if "--dry-run" in argv:
            continue
        opts, rest, i = {}, [], 0
        while i < len(argv):
            if argv[i].startswith("--"):
                opts[argv[i][2:]] = argv[i + 1]
                i += 2
            else:
                rest.append(argv[i])
                i += 1
        selections = {k: v for k, v in opts.items() if k in run_cmd.KIND_FLAGS}
        for name in [v for k, v in opts.items() if k == "plugin"]:
            spec = registry.find(name)
            selections[spec.kind] = name
        extra = rest + ([f"output_dir={opts['output-dir']}"] if "output-dir" in opts else [])
        extra += [f"run_mode={opts['run-mode']}"] if "run-mode" in opts else []
        cfg = loading.load_config(ROOT / opts["config"], registry, overrides=extra, selections=selections)
        if cfg.run_mode == "eval":
            continue
        where = str(Path(store_uri(cfg)).resolve()) if "://" not in store_uri(cfg) else store_uri(cfg)
        settings = json.loads(json.dumps(run_settings(cfg), default=str))
        if where in trained:
            first, earlier = trained[where]
            diff = sorted(k for k in set(settings) | set(earlier) if settings.get(k) != earlier.get(k))
            assert not diff, f"README: `sid run {' '.join(argv)}` would resume `{first}` with other {diff}"
        else:
            trained[where] = (" ".join(argv), settings)
