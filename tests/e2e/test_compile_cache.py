"""JAX's persistent compilation cache in `sid run`: on by default under the user cache folder, moved
by ``jax.compile_cache=<folder>``, turned off by ``jax.compile_cache=off``. No timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidcore.errors import ConfigError
from sidcore.run import compile_cache

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke" / "tiny.yaml")


def eval_run(tmp_path: Path, name: str, *overrides: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu", **env}
    full.pop("JAX_COMPILATION_CACHE_DIR", None)
    args = ["run", "--config", SMOKE, "--run-mode", "eval", "--output-dir", str(tmp_path / name),
            "eval.random_weights=true", *overrides]  # the cache is what is tested, not the weights
    res = subprocess.run([sys.executable, "-m", "sidcore.cli", *args], capture_output=True, text=True, env=full,
                         timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def entries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_resolve_cache_root(monkeypatch, tmp_path):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("SID_CACHE_DIR", str(tmp_path / "sid"))
    assert compile_cache.resolve_cache_root("auto") == tmp_path / "sid" / "jax"
    monkeypatch.delenv("SID_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.resolve_cache_root("auto") == tmp_path / "xdg" / "sid" / "jax"
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache.resolve_cache_root("auto") == tmp_path / "mine"  # the user's own setting wins
    assert compile_cache.resolve_cache_root("off") is None
    assert compile_cache.resolve_cache_root("OFF") is None
    assert compile_cache.resolve_cache_root(str(tmp_path / "here")) == tmp_path / "here"
    with pytest.raises(ConfigError, match="jax.compile_cache"):
        compile_cache.resolve_cache_root(" ")


def test_cache_key_names_versions_and_device():
    import jax
    import jaxlib

    key = compile_cache.cache_key()
    assert f"jax{jax.__version__}" in key and f"jaxlib{jaxlib.__version__}" in key
    assert jax.default_backend() in key and "/" not in key and " " not in key


def test_unwritable_folder_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="jax.compile_cache: cannot create"):
        compile_cache.enable_compile_cache(str(blocker / "cache"))


@pytest.mark.slow
def test_run_caches_by_default_in_the_user_cache(tmp_path):
    user = tmp_path / "user-cache"
    eval_run(tmp_path, "default", env={"SID_CACHE_DIR": str(user)})
    folders = [p for p in (user / "jax").iterdir() if p.is_dir()]
    assert len(folders) == 1 and folders[0].name.startswith("jax")
    assert entries(folders[0]), "no compiled program was written to the default cache folder"


@pytest.mark.slow
def test_run_cache_folder_is_configurable_and_can_be_turned_off(tmp_path):
    user = tmp_path / "user-cache"
    mine = tmp_path / "my-cache"
    eval_run(tmp_path, "moved", f"jax.compile_cache={mine}", env={"SID_CACHE_DIR": str(user)})
    assert entries(mine)
    assert not entries(user / "jax")
    eval_run(tmp_path, "off", "jax.compile_cache=off", env={"SID_CACHE_DIR": str(user)})
    assert not entries(user / "jax")
