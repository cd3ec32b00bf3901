"""``sid config show --help-keys``: every config key with its type, default and help text."""

from __future__ import annotations

from typing import Iterator

import attrs

from sidcore.config import schema
from sidcore.registry import Registry


def _fields(cls: type, prefix: str) -> Iterator[str]:
    attrs.resolve_types(cls)
    for f in attrs.fields(cls):
        key = f"{prefix}{f.name}"
        if attrs.has(f.type) if isinstance(f.type, type) else False:
            yield from _fields(f.type, key + ".")
            continue
        default = f.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory() if not default.takes_self else "..."
        if default is attrs.NOTHING:
            default = "(required)"
        yield f"{key} = {default!r}  # {f.metadata.get('help', '')}"


def key_help(registry: Registry) -> Iterator[str]:
    """Lines ``key = default  # help`` for the kernel schema and every registered component."""
    for f in attrs.fields(schema.RunConfig):
        if f.name in schema.SECTIONS:
            yield from _fields(schema.SECTIONS[f.name], f.name + ".")
        elif f.name not in schema.COMPONENT_SECTIONS and f.name != "metrics":
            yield f"{f.name} = {f.default!r}  # {f.metadata.get('help', '')}"
    for spec in registry.all():
        section = "metrics[]" if spec.kind == "metric" else spec.kind
        yield f"{section}.name = {spec.name!r}  # {spec.summary}"
        yield from _fields(spec.config, f"{section}[{spec.name}].")
