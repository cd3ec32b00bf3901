"""Plugins import the kernel through one public surface: `sidcore.hookimpl` and `sidcore.api`.

Scans every module of the built-in plugins and of the example package (function-local imports
included): an import of any other ``sidcore`` module fails this test, naming the file and line.
Also checks that every name `sidcore.api` offers resolves, and that importing it pulls in no JAX.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"sidcore", "sidcore.api"}


def _plugin_files() -> list[Path]:
    return sorted([*(ROOT / "plugins").rglob("*.py"), *(ROOT / "docs/examples").rglob("*.py")])


def _kernel_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "sidcore"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sidcore":
            if node.module == "sidcore":
                found += [(node.lineno, f"sidcore.{a.name}") for a in node.names if a.name not in ("hookimpl",)]
            else:
                found.append((node.lineno, node.module))
    return found


def test_plugins_import_only_the_public_api():
    bad = [f"{p.relative_to(ROOT)}:{line}: imports {mod}" for p in _plugin_files()
           for line, mod in _kernel_imports(p) if mod not in ALLOWED]
    assert not bad, "plugins may import only sidcore.hookimpl and sidcore.api:\n" + "\n".join(bad)


def test_every_api_name_resolves_and_the_module_is_light():
    import sidcore.api as api

    for name in api.__all__:
        assert getattr(api, name) is not None, name
    code = "import sys, sidcore.api; assert 'jax' not in sys.modules, 'sidcore.api imported jax'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
