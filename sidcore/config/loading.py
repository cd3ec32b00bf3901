"""Config resolution: YAML files with one ``base:`` key, ``key=value`` overrides, component sections.

Precedence (low -> high): schema defaults < base file(s) < config file < CLI flags (``--optimizer``,
``--plugin``, ...) < ``key=value`` overrides. Setting ``<section>.name`` (by file, flag or
override) to a *different* component than the file chose resets that section to the new
component's defaults before its other overrides apply (Hydra group replacement). Unknown keys are
errors with close-match suggestions; every error names the file and key.
"""

from __future__ import annotations

import copy
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

import attrs
import yaml

from sidcore.config import schema
from sidcore.config.checks import check_cross_fields, check_data_sources
from sidcore.errors import ConfigError
from sidcore.registry import Registry, suggest


# ------------------------------------------------------------------------------------------
# YAML files
# ------------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key repeated in one mapping (PyYAML keeps the last silently)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one YAML mapping; errors name the file and line (a duplicate key is an error)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


def _component_name(value: Any) -> Any:
    return value if isinstance(value, str) else value.get("name") if isinstance(value, Mapping) else None


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `over` into `base`; a component section naming a *different* component replaces the
    base's section (group replacement), and lists replace lists."""
    out = copy.deepcopy(dict(base))
    for k, val in over.items():
        if k in schema.COMPONENT_SECTIONS and k in out:
            old, new = _component_name(out[k]), _component_name(val)
            if new is not None and new != old:
                out[k] = copy.deepcopy(val)
                continue
            if isinstance(out[k], str):
                out[k] = {"name": out[k]}
            if isinstance(val, str):
                val = {"name": val}
        if isinstance(val, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], val)
        else:
            out[k] = copy.deepcopy(val)
    return out


def load_file_chain(path: str | os.PathLike[str], _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Load a config file and its ``base:`` ancestors (relative paths resolve beside the file)."""
    p = Path(path)
    here = p.resolve()
    if here in _seen:
        chain = " -> ".join(str(x) for x in (*_seen, here))
        raise ConfigError(f"{p}: 'base:' cycle ({chain})")
    data = read_yaml(p)
    base = data.pop("base", None)
    if base is not None:
        if len(_seen) >= 3:
            raise ConfigError(f"{p}: 'base:' chain deeper than 3 files")
        if not isinstance(base, str):
            raise ConfigError(f"{p}: 'base' must be a path string")
        parent = load_file_chain(p.parent / base, (*_seen, here))
        data = deep_merge(parent, data)
    return data


# ------------------------------------------------------------------------------------------
# key=value overrides
# ------------------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.learning_rate=1e-3"`` -> (["train", "learning_rate"], 0.001) (YAML-typed value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _looks_float(value):
        value = float(value)  # YAML 1.1 reads "1e-3" as a string
    return key.strip().split("."), value


def _looks_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return any(c in s.lower() for c in "e.") and s.strip().lower() not in {"nan", "inf", "-inf", ".inf"}


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply dotted overrides; a ``<component>.name`` change resets that section first."""
    out = copy.deepcopy(raw)
    for section in schema.COMPONENT_SECTIONS:
        if isinstance(out.get(section), str):  # `decoder: trie` shorthand
            out[section] = {"name": out[section]}
    parsed = [parse_override(o) for o in overrides]
    seen: dict[str, Any] = {}
    for keys, value in parsed:
        dotted = ".".join(keys)
        if dotted in seen and seen[dotted] != value:
            raise ConfigError(f"override '{dotted}' given twice with different values")
        seen[dotted] = value
    # name switches first, so that the section's other overrides land on the new component
    for keys, value in sorted(parsed, key=lambda kv: not (len(kv[0]) == 2 and kv[0][1] == "name")):
        if len(keys) == 2 and keys[0] in schema.COMPONENT_SECTIONS and keys[1] == "name":
            select_component(out, keys[0], str(value))
            continue
        node = out
        for k in keys[:-1]:
            nxt = node.get(k)
            if nxt is None:
                nxt = node[k] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override '{'.'.join(keys)}': '{k}' is not a section")
            node = nxt
        node[keys[-1]] = value
    return out


def select_component(raw: dict[str, Any], section: str, name: str) -> None:
    """Set ``raw[section].name``; switching to another component drops the old options."""
    current = raw.get(section)
    if isinstance(current, dict) and current.get("name") == name:
        return
    raw[section] = {"name": name}


# ------------------------------------------------------------------------------------------
# structuring into attrs classes
# ------------------------------------------------------------------------------------------


def structure(cls: type, data: Any, where: str) -> Any:
    """Build attrs ``cls`` from a mapping; unknown keys and bad types raise `ConfigError`."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    attrs.resolve_types(cls)
    fields = {f.name: f for f in attrs.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        k = unknown[0]
        hint = suggest(str(k), list(fields)) or f"; valid keys: {', '.join(fields) or 'none'}"
        raise ConfigError(f"{where}.{k}: unknown key{hint}")
    kwargs = {k: _coerce(fields[k].type, val, f"{where}.{k}") for k, val in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {_attrs_message(exc)}") from None


def _attrs_message(exc: Exception) -> str:
    # attrs validators raise ValueError("'field' must be in (...) (got 'x')", ...)
    return str(exc.args[0]) if exc.args else str(exc)


def _coerce(tp: Any, val: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is None:
        return val
    if origin in (typing.Union, types.UnionType):
        if val is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], val, where) if len(inner) == 1 else val
    if attrs.has(tp):
        return structure(tp, val, where)
    if origin in (list, tuple):
        if not isinstance(val, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {val!r}")
        return [_coerce(args[0], x, where) for x in val] if args else list(val)
    if origin is dict or tp is dict:
        if not isinstance(val, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {val!r}")
        return dict(val)
    if tp is bool:
        if not isinstance(val, bool):
            raise ConfigError(f"{where}: expected true/false, got {val!r}")
        return val
    if tp is int:
        if isinstance(val, bool) or not isinstance(val, int):
            if isinstance(val, float) and val.is_integer():
                return int(val)
            raise ConfigError(f"{where}: expected an integer, got {val!r}")
        return val
    if tp is float:
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {val!r}")
        return float(val)
    if tp is str:
        if isinstance(val, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {val!r}")
        if isinstance(val, bool):  # YAML 1.1 reads a bare on/off/yes/no as a bool
            return "on" if val else "off"
        return str(val)
    return val


def _component(registry: Registry, kind: str, raw: Any, where: str) -> schema.ComponentConfig:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping) or "name" not in raw:
        raise ConfigError(f"{where}: expected {{name: ..., <options>}}")
    options = dict(raw)
    name = str(options.pop("name"))
    try:
        spec = registry.get(kind, name)
    except Exception as exc:
        raise ConfigError(f"{where}.name: {exc}") from None
    return schema.ComponentConfig(name=name, options=structure(spec.config, options, where))


def resolve(raw: Mapping[str, Any], registry: Registry, *, source: str = "config") -> schema.RunConfig:
    """Turn a merged raw mapping into a validated `RunConfig`."""
    raw = dict(raw)
    top_fields = {f.name for f in attrs.fields(schema.RunConfig)}
    unknown = [k for k in raw if k not in top_fields]
    if unknown:
        k = unknown[0]
        raise ConfigError(f"{source}: unknown key '{k}'{suggest(str(k), sorted(top_fields))}")
    kwargs: dict[str, Any] = {}
    for key in ("base_model", "output_dir", "checkpoint_uri", "seed", "run_mode"):
        if key in raw:
            fld = attrs.fields_dict(schema.RunConfig)[key]
            attrs.resolve_types(schema.RunConfig)
            kwargs[key] = _coerce(fld.type, raw[key], f"{source}: {key}")
    for key, cls in schema.SECTIONS.items():
        kwargs[key] = structure(cls, raw.get(key), f"{source}: {key}")
    for section in schema.COMPONENT_SECTIONS:
        value = raw.get(section, schema.DEFAULT_COMPONENTS[section])
        kwargs[section] = _component(registry, section, value, f"{source}: {section}")
    metrics = raw.get("metrics", list(schema.DEFAULT_METRICS))
    if not isinstance(metrics, list) or not metrics:
        raise ConfigError(f"{source}: metrics: expected a non-empty list of names or {{name: ...}}")
    kwargs["metrics"] = tuple(
        _component(registry, "metric", m, f"{source}: metrics[{i}]") for i, m in enumerate(metrics)
    )
    try:
        cfg = schema.RunConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {_attrs_message(exc)}") from None
    check_cross_fields(cfg, source)
    if cfg.run_mode == "rl":
        for i, spec in enumerate(cfg.rl.rewards):  # reward components are validated like the others
            comp = registry.get("reward", spec.name)
            structure(comp.config, dict(spec.options), f"{source}: rl.rewards[{i}] ({spec.name})")
    cfg = fill_data_paths(cfg)
    check_data_sources(cfg, source)
    return cfg


def fill_data_paths(cfg: schema.RunConfig) -> schema.RunConfig:
    """Expand ``data.data_dir`` + ``data.category`` into the six MiniOneRec paths (explicit paths win)."""
    from sidcore.data.minionerec import data_dir_paths  # stdlib-only module

    d = cfg.data
    if d.data_dir is None:
        return cfg
    p = data_dir_paths(d.data_dir, d.category)
    filled = {"train_file": p["train"], "eval_file": p["valid"], "test_file": p["test"], "info_file": p["info"],
              "sid_index_path": p["index"], "item_meta_path": p["items"]}
    if not filled["train_file"].exists():  # MiniOneRec releases no train split here: train on valid
        filled["train_file"] = filled["eval_file"]
    changes = {k: str(path) for k, path in filled.items() if getattr(d, k) is None}
    return attrs.evolve(cfg, data=attrs.evolve(d, **changes))


def load_config(
    path: str | os.PathLike[str] | None,
    registry: Registry,
    *,
    overrides: Iterable[str] = (),
    selections: Mapping[str, str] | None = None,
) -> schema.RunConfig:
    """File chain -> component selections (CLI flags) -> overrides -> validated `RunConfig`."""
    raw = load_file_chain(path) if path is not None else {}
    for section, name in (selections or {}).items():
        select_component(raw, section, name)
    overrides = list(overrides)
    raw = apply_overrides(raw, overrides)
    source = str(path) if path else "config"
    try:
        return resolve(raw, registry, source=source)
    except ConfigError as exc:
        blamed = blame_override(str(exc), source, overrides)
        if blamed is None:
            raise
        raise ConfigError(blamed) from None


def blame_override(message: str, source: str, overrides: Iterable[str]) -> str | None:
    """A resolve error caused by a ``KEY=VALUE`` override, reworded to name the command line instead
    of the YAML file (None when no override set the key the message is about)."""
    if not message.startswith(source + ": "):
        return None
    rest = message[len(source) + 2:]
    top = re.match(r"unknown key '([^']+)'", rest)
    key = top.group(1) if top else rest.split(":", 1)[0].strip()
    for text in overrides:
        okey = text.partition("=")[0].strip()
        field = okey.rpartition(".")[2]
        if top and okey.split(".")[0] == key:
            return f"command-line override {text!r}: {rest}"
        if okey == key or key.startswith((okey + ".", okey + "[")) or \
                (okey.startswith(key + ".") and f"'{field}'" in rest):
            return f"command-line override {text!r}: {rest}"
    return None


# ------------------------------------------------------------------------------------------
# dumping
# ------------------------------------------------------------------------------------------


def to_dict(cfg: schema.RunConfig) -> dict[str, Any]:
    """Plain nested dict (component options flattened next to their ``name``)."""

    def conv(obj: Any) -> Any:
        if isinstance(obj, schema.ComponentConfig):
            return {"name": obj.name, **conv(obj.options)}
        if attrs.has(type(obj)):
            return {f.name: conv(getattr(obj, f.name)) for f in attrs.fields(type(obj))}
        if isinstance(obj, (list, tuple)):
            return [conv(x) for x in obj]
        if isinstance(obj, dict):
            return {k: conv(x) for k, x in obj.items()}
        return obj

    return conv(cfg)


def dump_yaml(cfg: schema.RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, val in d.items():
        key = f"{prefix}{k}"
        if isinstance(val, Mapping) and val:
            out.update(flatten(val, key + "."))
        else:
            out[key] = val
    return out
