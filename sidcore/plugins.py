"""Plugin discovery and loading.

Every plugin, built-in or third-party, is an entry point in the ``sidcore`` group. Each entry
point is imported and registered in its own ``try`` so a broken plugin becomes a `PluginRecord`
with ``status="error"`` instead of breaking the CLI. Environment switches:

- ``SID_DISABLE_PLUGINS=a,b``: do not load these plugins (status ``blocked``);
- ``SID_LOAD_PLUGINS=a,b``: load only these (empty value: none);
- ``SID_STRICT_PLUGINS=1``: any load error raises `PluginLoadError`;
- ``SID_TRACE_PLUGINS=1``: log every hook call.

Nothing here runs at import time; `load_plugins()` returns a fresh, independent result.
"""

from __future__ import annotations
import logging
import os
import sys
from importlib import metadata
from types import ModuleType
from typing import Any, Iterable

import attrs
import pluggy

from sidcore import hookspecs
from sidcore.errors import PluginLoadError
from sidcore.registry import Registry

log = logging.getLogger(__name__)

GROUP = "sidcore"
BUILTIN_DIST = "sid"


@attrs.define(kw_only=True)
class PluginRecord:
    """What the kernel knows about one plugin, for listing and error reports."""

    name: str
    module: str
    dist: str | None = None
    version: str | None = None
    source: str = "external"  # builtin | external | test
    status: str = "ok"  # ok | error | blocked
    error: str | None = None
    hooks: list[str] = attrs.field(factory=list)
    components: list[str] = attrs.field(factory=list)  # "kind:name"

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define(kw_only=True)
class Plugins:
    """The result of loading: the pluggy manager, per-plugin records and the component registry."""

    pm: pluggy.PluginManager
    records: list[PluginRecord]
    registry: Registry

    def record(self, name: str) -> PluginRecord:
        return next(r for r in self.records if r.name == name)

    def call_one(self, plugin_name: str, hook_name: str, **kwargs: Any) -> None:
        """Call one plugin's implementation of a hook through pluggy (tracing, argument-subset
        rule), without the other plugins' implementations."""
        call_one(self.pm, plugin_name, hook_name, **kwargs)

    def add_commands(self, group: Any, *, strict: bool | None = None) -> None:
        """Let every loaded plugin add its CLI commands (``register_commands``), one plugin at a time:
        a failing plugin is marked ``error`` (fatal in strict mode) and the others still register."""
        strict = strict_from_env() if strict is None else strict
        for rec in self.records:
            if rec.status != "ok" or "register_commands" not in rec.hooks:
                continue
            try:
                self.call_one(rec.name, "register_commands", cli=group)
            except Exception as exc:  # noqa: BLE001 - a plugin's command bug must not break sid
                _fail(rec, exc, "register commands", strict)


def call_one(pm: pluggy.PluginManager, plugin_name: str, hook_name: str, **kwargs: Any) -> None:
    plugin = pm.get_plugin(plugin_name)
    others = [p for name, p in pm.list_name_plugin() if name != plugin_name and p is not None]
    caller = pm.subset_hook_caller(hook_name, remove_plugins=others)
    if not any(impl.plugin is plugin for impl in caller.get_hookimpls()):
        return
    caller(**kwargs)


def _env_list(var: str) -> list[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return [x.strip() for x in raw.split(",") if x.strip()]


def strict_from_env() -> bool:
    return os.environ.get("SID_STRICT_PLUGINS", "").lower() in {"1", "true", "yes"}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _entry_points() -> list[metadata.EntryPoint]:
    eps = metadata.entry_points(group=GROUP)
    # Deterministic order: built-ins first, then by name.
    return sorted(eps, key=lambda ep: (getattr(ep.dist, "name", "") != BUILTIN_DIST, ep.name))


def load_plugins(
    *,
    entry_points: bool = True,
    extra: Iterable[tuple[str, ModuleType | object]] = (),
    allow: list[str] | None = None,
    block: Iterable[str] = (),
    strict: bool | None = None,
    eps: Iterable[metadata.EntryPoint] | None = None,
) -> Plugins:
    """Load plugins into a fresh manager and registry.

    Args:
        entry_points: load the ``sidcore`` entry-point group (built-ins included).
        extra: ``(name, module_or_object)`` plugins registered directly (tests; source ``test``).
        allow: only these entry-point names (default: ``SID_LOAD_PLUGINS`` or all).
        block: entry-point names to skip (plus ``SID_DISABLE_PLUGINS``).
        strict: raise on any load error (default: ``SID_STRICT_PLUGINS``).
        eps: explicit entry points instead of the installed group (tests).

    Returns:
        A `Plugins` bundle.

    Raises:
        PluginLoadError: a plugin failed and strict mode is on.
    """
    strict = strict_from_env() if strict is None else strict
    allow = _env_list("SID_LOAD_PLUGINS") if allow is None else allow
    blocked = set(block) | set(_env_list("SID_DISABLE_PLUGINS") or [])

    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    if os.environ.get("SID_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr))
        pm.enable_tracing()

    registry = Registry()
    records: list[PluginRecord] = []

    candidates: list[tuple[PluginRecord, Any]] = []
    if entry_points:
        for ep in _entry_points() if eps is None else list(eps):
            dist = getattr(ep, "dist", None)
            dist_name = getattr(dist, "name", None)
            rec = PluginRecord(
                name=ep.name,
                module=ep.value,
                dist=dist_name,
                version=getattr(dist, "version", None),
                source="builtin" if dist_name == BUILTIN_DIST else "external",
            )
            records.append(rec)
            if ep.name in blocked or (allow is not None and ep.name not in allow):
                rec.status = "blocked"
                continue
            candidates.append((rec, ep))
    for name, obj in extra:
        rec = PluginRecord(name=name, module=getattr(obj, "__name__", type(obj).__name__), source="test")
        records.append(rec)
        candidates.append((rec, obj))

    for rec, target in candidates:
        try:
            obj = target.load() if isinstance(target, metadata.EntryPoint) else target
            pm.register(obj, name=rec.name)
        except Exception as exc:  # noqa: BLE001 - isolate any plugin failure
            _fail(rec, exc, "import", strict)
            continue
        _register_components(pm, registry, rec, strict)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        culprit = getattr(exc, "plugin", None)
        name = pm.get_name(culprit) if culprit is not None else None
        rec = next((r for r in records if r.name == name), None)
        if rec is None or strict:
            raise PluginLoadError(f"plugin validation failed: {exc}") from exc
        _fail(rec, exc, "validate", strict)
    return Plugins(pm=pm, records=records, registry=registry)


def _fail(rec: PluginRecord, exc: BaseException, stage: str, strict: bool) -> None:
    rec.status = "error"
    rec.error = _one_line(exc)
    version = f" {rec.version}" if rec.version else ""
    msg = f"plugin '{rec.name}'{version} failed to {stage}: {rec.error}"
    if strict:
        raise PluginLoadError(msg) from exc
    print(f"Warning: {msg} (disable it with SID_DISABLE_PLUGINS={rec.name})", file=sys.stderr)


def _register_components(pm: pluggy.PluginManager, registry: Registry, rec: PluginRecord, strict: bool) -> None:
    """Call each registration hook of one plugin only, so its failure stays its own."""
    plugin = pm.get_plugin(rec.name)
    rec.hooks = sorted(
        hc.name for hc in pm.get_hookcallers(plugin) or [] if hc.name.startswith("register_")
    )
    for kind, hook_name in hookspecs.KINDS.items():
        if hook_name not in rec.hooks:
            continue
        try:
            call_one(pm, rec.name, hook_name, register=registry.make_register(kind, rec.name))
        except Exception as exc:  # noqa: BLE001 - duplicates and plugin bugs alike
            registry.remove_plugin(rec.name)
            rec.components = []
            _fail(rec, exc, "register", strict)
            return
    rec.components = [f"{s.kind}:{s.name}" for s in registry.all() if s.plugin == rec.name]


