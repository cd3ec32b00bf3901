"""Plugin manager: registration, listing, duplicates, isolation of broken plugins, strict mode."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import attrs
import pytest

from sidcore import hookimpl
from sidcore.errors import (
    AmbiguousComponentError,
    PluginLoadError,
    UnknownComponentError,
)
from sidcore.plugins import load_plugins


@attrs.frozen
class Cfg:
    x: int = 1


class OptPlugin:
    @hookimpl
    def register_optimizers(self, register):
        register("fancy_opt", lambda cfg, **kw: ("built", cfg.x, kw), config=Cfg, summary="fancy")


class DecoderPlugin:
    @hookimpl
    def register_decoders(self, register):
        register("greedy", "collections:OrderedDict", config=Cfg, summary="lazy factory")

    @hookimpl
    def register_metrics(self, register):
        register("fancy_opt", lambda cfg: None, config=Cfg)  # same name, other kind


class DupPlugin:
    @hookimpl
    def register_optimizers(self, register):
        register("fancy_opt", lambda cfg, **kw: None, config=Cfg)


class RaisingPlugin:
    @hookimpl
    def register_metrics(self, register):
        raise RuntimeError("boom in register")


class BadNamePlugin:
    @hookimpl
    def register_metrics(self, register):
        register("Bad-Name", lambda cfg: None, config=Cfg)


class TypoPlugin:
    @hookimpl
    def register_optimisers(self, register):  # not a hook: check_pending must catch it
        pass


def test_register_and_build():
    p = load_plugins(entry_points=False, extra=[("a", OptPlugin()), ("b", DecoderPlugin())])
    spec = p.registry.get("optimizer", "fancy_opt")
    assert spec.plugin == "a" and spec.summary == "fancy"
    assert spec.build(Cfg(x=3), learning_rate=1.0) == ("built", 3, {"learning_rate": 1.0})
    assert p.record("a").components == ["optimizer:fancy_opt"]
    assert p.record("a").hooks == ["register_optimizers"]
    assert p.record("b").components == ["decoder:greedy", "metric:fancy_opt"]
    # lazy "module:attr" factories are resolved only on use
    assert p.registry.get("decoder", "greedy").load_factory().__name__ == "OrderedDict"


def test_find_by_name_infers_kind_and_rejects_ambiguity():
    p = load_plugins(entry_points=False, extra=[("a", OptPlugin())])
    assert p.registry.find("fancy_opt").kind == "optimizer"
    p2 = load_plugins(entry_points=False, extra=[("a", OptPlugin()), ("b", DecoderPlugin())])
    with pytest.raises(AmbiguousComponentError, match="optimizer:fancy_opt, metric:fancy_opt"):
        p2.registry.find("fancy_opt")
    with pytest.raises(UnknownComponentError, match="did you mean: fancy_opt"):
        p.registry.find("fancy_op")
    with pytest.raises(UnknownComponentError, match="unknown optimizer 'adam'.*available: fancy_opt"):
        p.registry.get("optimizer", "adam")


def test_duplicate_names_both_plugins(capsys):
    p = load_plugins(entry_points=False, extra=[("a", OptPlugin()), ("dup", DupPlugin())], strict=False)
    rec = p.record("dup")
    assert rec.status == "error"
    assert "plugin 'a'" in rec.error and "plugin 'dup'" in rec.error
    assert p.registry.get("optimizer", "fancy_opt").plugin == "a"
    with pytest.raises(PluginLoadError, match="registered by both plugin 'a' and plugin 'dup'"):
        load_plugins(entry_points=False, extra=[("a", OptPlugin()), ("dup", DupPlugin())], strict=True)


def test_raising_register_isolated(capsys):
    p = load_plugins(entry_points=False, extra=[("bad", RaisingPlugin()), ("a", OptPlugin())], strict=False)
    assert p.record("bad").status == "error"
    assert p.record("bad").error == "RuntimeError: boom in register"
    assert p.record("a").status == "ok"
    err = capsys.readouterr().err
    assert "plugin 'bad' failed to register: RuntimeError: boom in register" in err
    assert err.count("\n") == 1


def test_bad_component_name_rejected():
    p = load_plugins(entry_points=False, extra=[("bad", BadNamePlugin())], strict=False)
    assert "not snake_case" in p.record("bad").error


def test_unknown_hook_is_a_validation_error():
    with pytest.raises(PluginLoadError, match="register_optimisers"):
        load_plugins(entry_points=False, extra=[("typo", TypoPlugin())], strict=True)
    p = load_plugins(entry_points=False, extra=[("typo", TypoPlugin())], strict=False)
    assert p.record("typo").status == "error"


class _FakeDist:
    name = "sid-plugin-fake"
    version = "9.9"


def _ep(name, value):
    ep = metadata.EntryPoint(name=name, value=value, group="sidcore")
    return ep._for(_FakeDist()) if hasattr(ep, "_for") else ep


def test_entry_point_import_error_and_strict(capsys):
    eps = [_ep("ghost", "sid_no_such_module_xyz")]
    p = load_plugins(eps=eps, strict=False)
    rec = p.record("ghost")
    assert rec.status == "error" and rec.error.startswith("ModuleNotFoundError")
    assert rec.source == "external"
    with pytest.raises(PluginLoadError, match="plugin 'ghost'.*failed to import"):
        load_plugins(eps=eps, strict=True)


def test_block_and_allow(monkeypatch):
    eps = [_ep("ghost", "sid_no_such_module_xyz")]
    monkeypatch.setenv("SID_DISABLE_PLUGINS", "ghost")
    assert load_plugins(eps=eps, strict=True).record("ghost").status == "blocked"
    monkeypatch.delenv("SID_DISABLE_PLUGINS")
    monkeypatch.setenv("SID_LOAD_PLUGINS", "")
    assert load_plugins(eps=eps, strict=True).record("ghost").status == "blocked"


def test_builtins_found_through_entry_points():
    p = load_plugins(strict=True)
    builtin = {r.name for r in p.records if r.source == "builtin"}
    assert {"optim", "decoders", "metrics", "stores", "launchers"} <= builtin
    assert all(r.dist == "sid" for r in p.records if r.source == "builtin")


def test_listing_plugins_does_not_import_jax():
    code = (
        "import sys, sidcore, sidcore.plugins as p\n"
        "p.load_plugins(strict=True)\n"
        "from sidcore.cli import main\n"
        "try:\n    main(['plugins', 'list', '--json'])\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('jax', 'optax', 'flax', 'google.cloud.storage', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


# ---------------------------------------------------------------------------- hooks called through pluggy


class CommandsPlugin:
    @hookimpl
    def register_commands(self, cli):
        raise RuntimeError("boom in commands")


class StorePlugin:
    @hookimpl
    def register_checkpoint_stores(self, register):
        register("s3ish", lambda cfg, *, uri: ("s3ish", uri), config=Cfg, schemes=("s3",))


class ClashPlugin:
    @hookimpl
    def register_checkpoint_stores(self, register):
        register("other_s3", lambda cfg, *, uri: None, config=Cfg, schemes=("s3",))


def test_hooks_are_called_through_pluggy_and_traced(monkeypatch, capsys):
    monkeypatch.setenv("SID_TRACE_PLUGINS", "1")
    load_plugins(entry_points=False, extra=[("a", OptPlugin())], strict=True)
    err = capsys.readouterr().err
    assert "register_optimizers [hook]" in err and "finish register_optimizers" in err


def test_each_plugin_is_called_alone():
    calls = []

    class Rec:
        def __init__(self, tag):
            self.tag = tag

        @hookimpl
        def register_metrics(self, register):
            calls.append(self.tag)

    load_plugins(entry_points=False, extra=[("x", Rec("x")), ("y", Rec("y"))], strict=True)
    assert calls == ["x", "y"]  # one call per plugin, never both at once


def test_register_commands_failure_is_isolated_and_strict(capsys):
    import click

    p = load_plugins(entry_points=False, extra=[("cmd", CommandsPlugin())], strict=False)
    p.add_commands(click.Group("sid"), strict=False)
    assert p.record("cmd").status == "error" and "boom in commands" in capsys.readouterr().err
    p = load_plugins(entry_points=False, extra=[("cmd", CommandsPlugin())], strict=False)
    with pytest.raises(PluginLoadError, match="boom in commands"):
        p.add_commands(click.Group("sid"), strict=True)


def test_stores_declare_schemes_and_the_registry_resolves_uris():
    p = load_plugins(strict=True)  # built-ins: msgpack serves local paths, gcs serves gs://
    reg = p.registry
    assert reg.store_for_uri("runs/x").name == "msgpack"
    assert reg.store_for_uri("file:///tmp/x").name == "msgpack"
    assert reg.store_for_uri("gs://bucket/x").name == "gcs"
    with pytest.raises(UnknownComponentError, match=r"s3://bucket/x: no installed store serves 's3://'.*gs://"):
        reg.store_for_uri("s3://bucket/x")
    reg3 = load_plugins(entry_points=False, extra=[("s", StorePlugin())], strict=True).registry
    assert reg3.store_for_uri("s3://b/k").name == "s3ish"
    with pytest.raises(PluginLoadError, match="scheme 's3' is claimed by store 's3ish'"):
        load_plugins(entry_points=False, extra=[("s", StorePlugin()), ("c", ClashPlugin())], strict=True)
