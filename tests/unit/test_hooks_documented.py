"""Every hook spec is documented in docs/plugins.md and exercised by a plugin test."""

from __future__ import annotations

import inspect
from pathlib import Path

from sidcore import hookspecs

DOC = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()


def spec_names():
    return [n for n, f in vars(hookspecs).items() if inspect.isfunction(f) and n.startswith("register_")]


def test_every_hook_has_a_doc_section_with_its_signature():
    names = spec_names()
    assert set(names) == set(hookspecs.KINDS.values()) | {"register_commands"}
    for name in names:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"### {name}({params})" in DOC, name


def test_every_component_hook_is_implemented_by_a_builtin():
    from sidcore.plugins import load_plugins

    plugins = load_plugins(strict=True)
    hooks = {h for r in plugins.records if r.source == "builtin" for h in r.hooks}
    assert set(hookspecs.KINDS.values()) | {"register_commands"} <= hooks


def test_every_hookspec_docstring_follows_the_template():
    """One template for all hook specs: a summary line, then Args, When called, What to register, Errors."""
    for name in spec_names():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        lines = doc.splitlines()
        assert lines and lines[0].startswith(("Register ", "Add ")), name
        positions = [doc.find(section) for section in ("\nArgs:\n", "\nWhen called:", "\nWhat to register:", "\nErrors:")]
        assert all(p > 0 for p in positions) and positions == sorted(positions), \
            f"{name}: sections Args / When called / What to register / Errors, in that order"
