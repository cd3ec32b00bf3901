"""Component registry: what each plugin registered, validated, and looked up by name.

A component is (kind, name, factory, config class, summary, providing plugin). Names are
snake_case and unique per kind; a duplicate is an error naming both plugins (never renamed).
Lookups of unknown names raise with close-match suggestions.
"""

from __future__ import annotations

import difflib
import importlib
import re
from typing import Any, Callable

import attrs

from sidcore.errors import (
    AmbiguousComponentError,
    DuplicateComponentError,
    PluginLoadError,
    UnknownComponentError,
)
from sidcore.hookspecs import KINDS

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@attrs.frozen(kw_only=True)
class ComponentSpec:
    """One registered component."""

    kind: str
    name: str
    factory: Callable[..., Any] | str  # callable, or lazy "module:attr"
    config: type
    summary: str
    plugin: str

    def load_factory(self) -> Callable[..., Any]:
        """Return the factory callable, importing a lazy ``"module:attr"`` target on first use."""
        if callable(self.factory):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise PluginLoadError(
                f"{self.kind} '{self.name}' (plugin '{self.plugin}'): cannot load factory "
                f"{self.factory!r}: {exc}"
            ) from exc

    def build(self, cfg: Any, **kwargs: Any) -> Any:
        """Call the factory with the component's config and kernel-supplied keyword arguments."""
        return self.load_factory()(cfg, **kwargs)


def suggest(name: str, candidates: list[str]) -> str:
    """A human suffix like `` (did you mean: trie?)`` or ``""``."""
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


class Registry:
    """Per-kind tables of `ComponentSpec`, filled through plugins' register callbacks."""

    def __init__(self) -> None:
        self._by_kind: dict[str, dict[str, ComponentSpec]] = {kind: {} for kind in KINDS}

    def make_register(self, kind: str, plugin: str) -> Callable[..., None]:
        """Return the ``register(name, factory, *, config, summary)`` callback for one plugin."""

        def register(
            name: str,
            factory: Callable[..., Any] | str,
            *,
            config: type | None = None,
            summary: str = "",
        ) -> None:
            self.add(kind=kind, name=name, factory=factory, config=config, summary=summary, plugin=plugin)

        return register

    def add(
        self,
        *,
        kind: str,
        name: str,
        factory: Callable[..., Any] | str,
        config: type | None,
        summary: str,
        plugin: str,
    ) -> ComponentSpec:
        if kind not in self._by_kind:
            raise PluginLoadError(f"plugin '{plugin}': unknown component kind {kind!r}")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise PluginLoadError(
                f"plugin '{plugin}': {kind} name {name!r} is not snake_case (^[a-z][a-z0-9_]*$)"
            )
        if config is None or not attrs.has(config):
            raise PluginLoadError(f"plugin '{plugin}': {kind} '{name}' needs an attrs config class")
        if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
            raise PluginLoadError(
                f"plugin '{plugin}': {kind} '{name}' factory must be callable or 'module:attr'"
            )
        table = self._by_kind[kind]
        if name in table:
            other = table[name].plugin
            raise DuplicateComponentError(
                f"{kind} '{name}' is registered by both plugin '{other}' and plugin '{plugin}'; "
                f"disable one with SID_DISABLE_PLUGINS={plugin}"
            )
        spec = ComponentSpec(
            kind=kind, name=name, factory=factory, config=config, summary=summary, plugin=plugin
        )
        table[name] = spec
        return spec

    def remove_plugin(self, plugin: str) -> None:
        """Drop every component a plugin registered (used when its registration failed midway)."""
        for table in self._by_kind.values():
            for name in [n for n, s in table.items() if s.plugin == plugin]:
                del table[name]

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[kind])

    def all(self) -> list[ComponentSpec]:
        return [s for kind in KINDS for s in self._by_kind[kind].values()]

    def get(self, kind: str, name: str) -> ComponentSpec:
        """The component `name` of `kind`, or `UnknownComponentError` with suggestions."""
        table = self._by_kind[kind]
        if name not in table:
            available = ", ".join(sorted(table)) or "none"
            raise UnknownComponentError(
                f"unknown {kind} '{name}'{suggest(name, list(table))}; available: {available}"
            )
        return table[name]

    def find(self, name: str) -> ComponentSpec:
        """Resolve a bare component name across kinds (for ``--plugin NAME``)."""
        hits = [t[name] for t in self._by_kind.values() if name in t]
        if len(hits) > 1:
            kinds = ", ".join(f"{h.kind}:{h.name}" for h in hits)
            raise AmbiguousComponentError(
                f"--plugin '{name}' is ambiguous ({kinds}); use the kind flag, e.g. --{hits[0].kind} {name}"
            )
        if not hits:
            every = sorted({s.name for s in self.all()})
            raise UnknownComponentError(
                f"no component named '{name}'{suggest(name, every)}; available: {', '.join(every) or 'none'}"
            )
        return hits[0]
