"""The example third-party package end to end: pip-installed, listed, selectable, usable; and a
broken package that must not break `sid`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    for pkg in ("docs/examples/sid-plugin-example", "tests/fixtures/sid-plugin-broken"):
        out = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
             "--no-index", "--target", str(target), str(ROOT / pkg)],
            capture_output=True, text=True, timeout=300,
        )
        assert out.returncode == 0, out.stderr
    return target


def run(site, *args, env=None):
    full = {**os.environ, "PYTHONPATH": str(site), **(env or {})}
    full.pop("SID_STRICT_PLUGINS", None)
    full.update(env or {})
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full, timeout=120)


def test_example_listed_and_broken_isolated(site):
    out = run(site, "-m", "sidcore.cli", "plugins", "list", "--json")
    assert out.returncode == 0, out.stderr
    recs = {r["name"]: r for r in json.loads(out.stdout)}
    ex = recs["example"]
    assert ex["version"] == "0.3.1" and ex["source"] == "external" and ex["status"] == "ok"
    assert sorted(ex["components"]) == ["launcher:nice_local", "metric:mrr", "store:npz_dir"]
    assert ex["dist"] == "sid-plugin-example"
    br = recs["broken"]
    assert br["status"] == "error" and "definitely_missing_dependency" in br["error"]
    assert "plugin 'broken' 0.0.1 failed to import" in out.stderr
    assert run(site, "-m", "sidcore.cli", "--help").returncode == 0
    out = run(site, "-m", "sidcore.cli", "plugins", "list", "--requirements")
    assert "sid-plugin-example==0.3.1" in out.stdout.splitlines()


def test_strict_mode_fails(site):
    out = run(site, "-m", "sidcore.cli", "plugins", "list", env={"SID_STRICT_PLUGINS": "1"})
    assert out.returncode != 0
    assert "broken" in out.stderr and "Traceback" not in out.stderr


def test_example_metric_selectable_and_computes(site):
    out = run(site, "-m", "sidcore.cli", "config", "show", "--flat", "metrics=[hr, {name: mrr, k: 5}]",
              env={"SID_DISABLE_PLUGINS": "broken"})
    assert out.returncode == 0, out.stderr
    assert 'metrics: [{"name": "hr"' in out.stdout and '"name": "mrr", "k": 5' in out.stdout
    code = (
        "from sidcore.plugins import load_plugins\n"
        "p = load_plugins(block=['broken'], strict=True)\n"
        "spec = p.registry.get('metric', 'mrr')\n"
        "m = spec.build(spec.config(k=3))\n"
        "print(m([['<a>', '\"<b>\"\\n'], ['<c>']], ['<b>\\n', '<x>'], catalog=None))\n"
    )
    out = run(site, "-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "{'mrr@3': 0.25}"
