"""The kernel's import graph: no circles between sidcore modules, and no sidcore module imports a
plugin package (``sid_*``) — plugins are found through entry points only.

Every ``import``/``from ... import`` in a module counts, function-local ones included (a local import
only defers a circle, it does not remove it); ``if TYPE_CHECKING:`` blocks do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "sidcore"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """sidcore modules (and sid_* packages) that `path` imports at run time."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path) if path.is_relative_to(ROOT) else path.stem
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()

    def add(name: str) -> None:
        if name.startswith("sid_"):
            found.add(name.split(".")[0])
            return
        # the longest known module prefix: `from sidcore.data import tasks` -> sidcore.data.tasks
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != me:
            found.add(name)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                for a in child.names:
                    add(a.name)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for a in child.names:
                    add(f"{base}.{a.name}")
            visit(child)

    visit(tree)
    return found


def graph() -> dict[str, set[str]]:
    files = sorted(PKG.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports_of(f, modules) for f in files}


def _package_parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_no_sidcore_module_imports_a_plugin_package():
    bad = {m: sorted(d for d in deps if d.startswith("sid_")) for m, deps in graph().items()}
    bad = {m: d for m, d in bad.items() if d}
    assert not bad, f"sidcore modules importing plugin packages: {bad}"


def test_no_import_cycles_between_sidcore_modules():
    g = graph()
    # Importing a.b.c runs a/__init__ and a/b/__init__ first; a package __init__ importing its own
    # submodules is the normal shape, not a circle, so edges into one's own parent packages are dropped.
    edges = {m: {d for d in deps if d.startswith("sidcore") and d not in _package_parents(m)}
             for m, deps in g.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            dfs(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_sees_function_local_imports(tmp_path):
    # The checker must not be fooled by an import hidden inside a function body.
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    from sidcore.run import job\n\nif TYPE_CHECKING:\n    import sidcore.cli\n")
    assert imports_of(mod, {"sidcore", "sidcore.run", "sidcore.run.job", "sidcore.cli"}) == {"sidcore.run.job"}
