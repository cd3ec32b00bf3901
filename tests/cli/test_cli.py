"""The `sid` CLI as a user meets it: exit codes, one-line errors, listing, config commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SID = [sys.executable, "-m", "sidcore.cli"]
ROOT = Path(__file__).resolve().parents[2]


def sid(*args, env=None, cwd=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*SID, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120)


def test_version_and_help():
    out = sid("--version")
    assert out.returncode == 0 and "sid, version" in out.stdout
    out = sid("--help")
    assert out.returncode == 0
    for cmd in ("run", "plugins", "config"):
        assert cmd in out.stdout


def test_plugins_list_json_has_builtin_families():
    out = sid("plugins", "list", "--json", env={"SID_STRICT_PLUGINS": "1"})
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    by_name = {r["name"]: r for r in records}
    assert {"optim", "decoders", "metrics", "stores", "launchers"} <= set(by_name)
    for r in records:
        assert {"name", "version", "source", "status", "components", "error"} <= set(r)
    comps = {c for r in records for c in r["components"]}
    assert {"optimizer:adamw", "optimizer:optax_muon", "optimizer:muon_local", "decoder:trie",
            "decoder:pure_beam", "metric:hr", "metric:ndcg", "metric:invalid", "store:msgpack",
            "store:gcs", "launcher:local"} <= comps


def test_plugins_list_table_and_kind_filter():
    out = sid("plugins", "list", "--kind", "optimizer")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0].split()[:5] == ["NAME", "VERSION", "SOURCE", "STATUS", "COMPONENTS"]
    assert any(line.startswith("optim ") for line in lines[1:])
    assert not any(line.startswith("metrics ") for line in lines[1:])


@pytest.mark.parametrize(
    "args, needle, code",
    [
        (["run", "--config", "nope.yaml"], "nope.yaml: config file not found", 1),
        (["run", "--config", "{bad}", "--plugin", "nonexistent_thing"], "no component named 'nonexistent_thing'", 1),
        (["run", "--config", "{bad}", "--plugin", "adamx"], "did you mean: adamw", 1),
        (["run", "--config", "{yaml}"], "invalid YAML", 1),
        (["run", "--config", "{unknown}"], "train.learnin_rate: unknown key", 1),
        (["run", "--config", "{bad}", "--run-mode", "fly"], "Invalid value for '--run-mode'", 2),
        (["config", "validate", "{unknown}"], "unknown key", 1),
    ],
)
def test_errors_are_one_line_with_exit_code(tmp_path, args, needle, code):
    files = {
        "bad": tmp_path / "ok.yaml",
        "yaml": tmp_path / "bad.yaml",
        "unknown": tmp_path / "unknown.yaml",
    }
    files["bad"].write_text("seed: 1\n")
    files["yaml"].write_text("train: [1, 2\n")
    files["unknown"].write_text("train:\n  learnin_rate: 1\n")
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    out = sid(*args)
    assert out.returncode == code, out.stderr
    assert needle in out.stderr
    assert "Traceback" not in out.stderr
    if code == 1:
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_debug_shows_traceback():
    out = sid("--debug", "run", "--config", "nope.yaml")
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_config_show_flat_and_validate_all_configs():
    out = sid("config", "show", "--flat", "optimizer.name=muon_local", "train.max_steps=3")
    assert out.returncode == 0, out.stderr
    assert 'optimizer.name: "muon_local"' in out.stdout and "train.max_steps: 3" in out.stdout
    configs = sorted(str(p) for p in (ROOT / "configs").rglob("*.yaml"))
    assert configs
    out = sid("config", "validate", *configs)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("ok  ") == len(configs)


def test_help_keys_lists_component_options():
    out = sid("config", "show", "--help-keys")
    assert out.returncode == 0, out.stderr
    assert "train.learning_rate = 0.0003" in out.stdout
    assert "optimizer[optax_muon]." in out.stdout


def test_plugin_flag_selects_component_kind(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("output_dir: %s\n" % (tmp_path / "run"))
    out = sid("run", "--config", str(cfg), "--plugin", "optax_muon", "--decoder", "pure_beam", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "name: optax_muon" in out.stdout and "name: pure_beam" in out.stdout
    out = sid("run", "--config", str(cfg), "--plugin", "optax_muon", "--optimizer", "adamw", "--dry-run")
    assert out.returncode == 2 and "conflicts" in out.stderr


def test_config_validate_takes_folders_and_recursive_globs(tmp_path):
    from click.testing import CliRunner

    from sidcore.cli import build_cli

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "ok.yaml").write_text("seed: 1\n")
    (tmp_path / "a" / "b" / "deep.yaml").write_text("train: {max_steps: 3}\n")
    cli = build_cli()
    for arg in (str(tmp_path / "a"), str(tmp_path / "a" / "**" / "*.yaml")):
        res = CliRunner().invoke(cli, ["config", "validate", arg])
        assert res.exit_code == 0 and res.output.count("ok  ") == 2, res.output
    (tmp_path / "a" / "b" / "bad.yaml").write_text("train: {lerning_rate: 1}\n")
    res = CliRunner().invoke(cli, ["config", "validate", str(tmp_path / "a")])
    assert res.exit_code != 0 and "1 of 3 config file(s) invalid" in str(res.exception)
    assert "bad.yaml: train.lerning_rate: unknown key" in res.output and res.output.count("ok  ") == 2
    res = CliRunner().invoke(cli, ["config", "validate", str(tmp_path / "empty*")])
    assert res.exit_code != 0 and "no file matches" in str(res.exception)
