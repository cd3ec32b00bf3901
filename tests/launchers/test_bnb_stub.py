"""The bitsandbytes import stub: importable only when stubs/ is put on PYTHONPATH on purpose."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

import sid_launchers
from sid_launchers.local import stubs_dir

REPO = Path(__file__).resolve().parents[2]


def run_py(code: str, pythonpath: str | None, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_stubs_dir_is_the_repo_folder():
    assert stubs_dir() == REPO / "stubs"


def test_import_with_stub_path_only(tmp_path):
    code = "import bitsandbytes as b; print(b.__version__)"
    ok = run_py(code, str(stubs_dir()), tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "0.0.0+sid.stub"
    missing = run_py(code, None, tmp_path)
    assert missing.returncode != 0 and "ModuleNotFoundError" in missing.stderr


def test_real_functionality_raises_clear_error(tmp_path):
    code = (
        "import bitsandbytes as b\n"
        "try:\n    b.nn.Linear8bitLt\nexcept ImportError as e:\n    print('E1', e)\n"
        "try:\n    from bitsandbytes import functional\nexcept ImportError as e:\n    print('E2', e)\n"
        "print('dunder', hasattr(b, '__wrapped__'))\n"
    )
    res = run_py(code, str(stubs_dir()), tmp_path)
    assert res.returncode == 0, res.stderr
    assert "E1 bitsandbytes stub: real functionality not available (bitsandbytes.nn)" in res.stdout
    assert "E2 bitsandbytes stub: real functionality not available (bitsandbytes.functional)" in res.stdout
    assert "dunder False" in res.stdout


def test_not_installed_in_site_packages():
    assert importlib.util.find_spec("bitsandbytes") is None


def test_stub_path_command():
    group = click.Group("sid")
    sid_launchers.register_commands(cli=group)
    res = CliRunner().invoke(group, ["stub-path"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(REPO / "stubs")
