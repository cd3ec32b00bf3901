"""Component registry: what each plugin registered, validated, and looked up by name.

A component is (kind, name, factory, config class, summary, providing plugin). Names are
snake_case and unique per kind; a duplicate is an error naming both plugins (never renamed).
Lookups of unknown names raise with close-match suggestions.
"""

from __future__ import annotations

import difflib
import importlib
import re
from typing import Any, Callable, Sequence

import attrs

from sidcore.errors import (
    AmbiguousComponentError,
    DuplicateComponentError,
    PluginLoadError,
    UnknownComponentError,
)
from sidcore.hookspecs import KINDS
from sidcore.interfaces import Register

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.\-]*$")
_URI_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def uri_scheme(uri: str) -> str:
    """``gs://b/p`` -> ``gs``; ``file:///x`` -> ``file``; a plain path (no ``scheme://``) -> ``file``."""
    m = _URI_RE.match(str(uri))
    return m.group(1).lower() if m else "file"


def local_path(uri: str) -> str:
    """``file:///x/y`` (or ``file://localhost/x/y``) -> ``/x/y``; any other text unchanged, so a
    ``file://`` URI is accepted wherever a local path is (as a source too, not only a destination)."""
    text = str(uri)
    if text[:7].lower() != "file://":
        return text
    rest = text[7:]
    return rest[len("localhost"):] if rest.startswith("localhost/") else rest


@attrs.frozen(kw_only=True)
class ComponentSpec:
    """One registered component."""

    kind: str
    name: str
    factory: Callable[..., Any] | str  # callable, or lazy "module:attr"
    config: type
    summary: str
    plugin: str
    schemes: tuple[str, ...] = ()  # stores: URI schemes served ("file" = plain local paths)
    detect: Callable[[str], bool] | str | None = None  # stores: "does this URI hold my checkpoints?"

    def holds(self, uri: str) -> bool:
        """A detecting store's answer for `uri` (False for stores that do not detect)."""
        if self.detect is None:
            return False
        fn = self.detect
        if not callable(fn):
            module_name, _, attr = fn.partition(":")
            try:
                fn = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise PluginLoadError(f"store '{self.name}' (plugin '{self.plugin}'): cannot load detect "
                                      f"{self.detect!r}: {exc}") from exc
        return bool(fn(uri))

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

    def make_register(self, kind: str, plugin: str) -> Register:
        """Return the `sidcore.interfaces.Register` callback for one plugin and kind."""

        def register(
            name: str,
            factory: Callable[..., Any] | str,
            *,
            config: type | None = None,
            summary: str = "",
            schemes: Sequence[str] = (),
            detect: Callable[[str], bool] | str | None = None,
        ) -> None:
            self.add(kind=kind, name=name, factory=factory, config=config, summary=summary, plugin=plugin,
                     schemes=schemes, detect=detect)

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
        schemes: Sequence[str] = (),
        detect: Callable[[str], bool] | str | None = None,
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
        schemes = tuple(schemes)
        if schemes and kind != "store":
            raise PluginLoadError(f"plugin '{plugin}': only stores declare URI schemes ({kind} '{name}')")
        if not all(isinstance(x, str) and SCHEME_RE.match(x) for x in schemes):
            raise PluginLoadError(f"plugin '{plugin}': store '{name}' schemes {schemes!r} must be lowercase names")
        table = self._by_kind[kind]
        if name in table:
            other = table[name].plugin
            raise DuplicateComponentError(
                f"{kind} '{name}' is registered by both plugin '{other}' and plugin '{plugin}'; "
                f"disable one with SID_DISABLE_PLUGINS={plugin}"
            )
        for other in table.values():
            clash = set(other.schemes) & set(schemes)
            if clash:
                raise DuplicateComponentError(
                    f"URI scheme {sorted(clash)[0]!r} is claimed by store '{other.name}' (plugin '{other.plugin}') "
                    f"and store '{name}' (plugin '{plugin}'); disable one with SID_DISABLE_PLUGINS={plugin}"
                )
        spec = ComponentSpec(
            kind=kind, name=name, factory=factory, config=config, summary=summary, plugin=plugin, schemes=schemes,
            detect=detect,
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

    def schemes(self) -> dict[str, str]:
        """URI scheme -> the store serving it."""
        return {sc: spec.name for spec in self._by_kind["store"].values() for sc in spec.schemes}

    def store_for_uri(self, uri: str) -> ComponentSpec:
        """The store component serving `uri`: a store that detects its checkpoints there, else the
        one registered for its scheme (``scheme://...``; a plain path is scheme ``file``)."""
        for spec in self._by_kind["store"].values():
            if spec.holds(uri):
                return spec
        scheme = uri_scheme(uri)
        table = self.schemes()
        if scheme not in table:
            served = ", ".join(f"{s}:// ({n})" if s != "file" else f"local paths ({n})"
                               for s, n in sorted(table.items())) or "none"
            raise UnknownComponentError(f"{uri}: no installed store serves '{scheme}://' URIs; installed: {served}")
        return self._by_kind["store"][table[scheme]]

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
