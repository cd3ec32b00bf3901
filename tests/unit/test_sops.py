"""The SOPs in docs/sops/*.md, exercised with ``--dry-run`` against a fake ``gcloud``.

Every ```` ```bash ```` block is read like a tiny shell: ``export`` assignments and ``for`` loops
are expanded, continuation lines joined, and each command that starts with ``sid `` is run in a
subprocess with ``--dry-run`` added (commands without that flag, such as ``sid report``, are only
checked to exist). A fake ``gcloud`` (tests/launchers/bin/gcloud) is first on PATH and records
every call: after all dry runs its log must still be empty, and every ``sid`` command must exit 0.
The commands run in-process through click's test runner (fast); one runs through the real console
entry point in a subprocess.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sidcore.cli import build_cli

ROOT = Path(__file__).resolve().parents[2]
SOPS = sorted((ROOT / "docs" / "sops").glob("*.md"))
FAKE_GCLOUD = ROOT / "tests" / "launchers" / "bin" / "gcloud"
SID = [sys.executable, "-m", "sidcore.cli"]
GROUPS = {"tpu", "checkpoint", "config", "plugins"}  # sid commands with subcommands
DUMMY = {"TPU": "sid-sop-vm", "TRAIN_TPU": "sid-sop-train", "EVAL_TPU": "sid-sop-eval", "ZONE": "us-east5-b",
         "PROJECT": "my-project", "BUCKET": "my-bucket"}
VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)


def logical_lines(block: str) -> list[str]:
    """Join backslash continuations; drop blank and comment lines."""
    joined = re.sub(r"\s*\\\n\s*", " ", block)
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def substitute(text: str, env: dict[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in env:
            raise KeyError(f"undefined shell variable ${name} in: {text}")
        return env[name]

    return VAR_RE.sub(repl, text)


def sop_commands(text: str) -> list[str]:
    """Expand a SOP's bash blocks into the ``sid ...`` command lines they would run."""
    env = dict(DUMMY)
    out: list[str] = []

    def walk(lines: list[str], env: dict[str, str]) -> None:
        i = 0
        while i < len(lines):
            line = re.sub(r"\s+#\s.*$", "", lines[i])
            loop = re.match(r"for (\w+) in (.+?); do$", line)
            if loop:
                depth, j = 1, i + 1
                while depth:
                    if j >= len(lines):
                        raise ValueError(f"unterminated loop: {line}")
                    depth += lines[j].startswith("for ") - (lines[j] == "done")
                    j += 1
                for value in shlex.split(substitute(loop.group(2), env)):
                    walk(lines[i + 1: j - 1], {**env, loop.group(1): value})
                i = j
                continue
            if line.startswith("export "):
                for item in shlex.split(line[len("export "):]):
                    name, _, value = item.partition("=")
                    env[name] = substitute(value, env)
            elif line.startswith(("until ", "while ")):
                cond = re.match(r"(?:until|while) (.+?); do", line)
                if cond and cond.group(1).startswith("sid "):
                    out.append(substitute(cond.group(1), env))
            elif line.startswith("sid "):
                out.append(substitute(line, env))
            i += 1

    for block in bash_blocks(text):
        walk(logical_lines(block), env)
    return out


def sid(argv: list[str]):
    """Invoke the full ``sid`` CLI (kernel + plugin commands) in-process."""
    return CliRunner().invoke(build_cli(), argv, catch_exceptions=True)


@functools.lru_cache(maxsize=None)
def help_text(path: tuple[str, ...]) -> str:
    res = sid([*path, "--help"])
    assert res.exit_code == 0, f"sid {' '.join(path)} is not a command: {res.output.strip()}"
    return res.output


def command_path(argv: list[str]) -> tuple[str, ...]:
    return tuple(argv[:2]) if argv[0] in GROUPS else (argv[0],)


@pytest.fixture
def fake_gcloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "gcloud"
    exe, fake = shlex.quote(sys.executable), shlex.quote(str(FAKE_GCLOUD))
    wrapper.write_text(f"#!/bin/sh\nexec {exe} {fake} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "gcloud.jsonl"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_GCLOUD_LOG": str(log),
           "FAKE_GCLOUD_STATE": str(tmp_path / "gcloud_state.json"), "SID_STRICT_PLUGINS": "1"}
    env.pop("SID_DISABLE_PLUGINS", None)
    for name in ("PATH", "FAKE_GCLOUD_LOG", "FAKE_GCLOUD_STATE"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.chdir(ROOT)
    return env


def test_sop_parser_expands_exports_loops_and_continuations():
    text = ("```bash\nexport A=x B=$A-y\nfor o in p q; do\n"
            "  sid tpu run --config c_$o.yaml --tpu-name $B \\\n    --zone z\ndone\n"
            "until sid tpu exit-code --tpu-name $A; do sleep 60; done\ngcloud ignored\n```\n")
    assert sop_commands(text) == ["sid tpu run --config c_p.yaml --tpu-name x-y --zone z",
                                  "sid tpu run --config c_q.yaml --tpu-name x-y --zone z",
                                  "sid tpu exit-code --tpu-name x"]


def test_every_sop_has_commands():
    assert len(SOPS) >= 4
    for sop in SOPS:
        if sop.name == "README.md":
            continue
        assert any(c.startswith("sid tpu ") for c in sop_commands(sop.read_text())), sop.name


def test_sop_config_paths_exist():
    for sop in SOPS:
        for rel in re.findall(r"configs/[\w./-]+\.yaml", sop.read_text()):
            assert (ROOT / rel).is_file(), f"{sop.name}: {rel} does not exist"


@pytest.mark.parametrize("sop", [s for s in SOPS if s.name != "README.md"], ids=lambda p: p.stem)
def test_sop_commands_dry_run(sop: Path, fake_gcloud: dict[str, str], tmp_path: Path):
    ran = 0
    for line in sop_commands(sop.read_text()):
        argv = shlex.split(line)[1:]
        path = command_path(argv)
        if "--dry-run" not in help_text(path):
            continue  # e.g. `sid report`: exists (help_text checked it) but has no dry run
        argv = [*path, "--dry-run", *argv[len(path):]]
        if list(path) == ["tpu", "sync-env"]:  # a dry run checks the local secrets file too: a stand-in one
            (tmp_path / ".env").write_text("WANDB_API_KEY=x\n")
            argv += ["--set", f"env_file={tmp_path / '.env'}"]
        res = sid(argv)
        assert res.exit_code == 0, f"{sop.name}: sid {shlex.join(argv)}\n{res.output}\n{res.exception!r}"
        if path[0] == "tpu":  # the printed plan holds the gcloud calls it would make
            assert "gcloud alpha compute tpus" in res.output, line
        ran += 1
    assert ran > 0
    log = Path(fake_gcloud["FAKE_GCLOUD_LOG"])
    calls = log.read_text() if log.exists() else ""
    assert calls == "", f"{sop.name}: a dry run called gcloud: {calls}"


def test_sop_command_through_console_entry_point(fake_gcloud: dict[str, str]):
    sop = ROOT / "docs" / "sops" / "tpu-single-host-train-eval.md"
    line = next(c for c in sop_commands(sop.read_text()) if c.startswith("sid tpu run "))
    argv = shlex.split(line)[1:]
    res = subprocess.run([*SID, "tpu", "run", "--dry-run", *argv[2:]], capture_output=True, text=True,
                         cwd=ROOT, env=fake_gcloud, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "--worker=all" in res.stdout + res.stderr
    assert "configs/tpu/v6e-8/industrial_adamw.yaml" in res.stdout + res.stderr
    assert not Path(fake_gcloud["FAKE_GCLOUD_LOG"]).exists()
