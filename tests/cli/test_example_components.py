"""The example plugin's store and launcher, written from docs/plugins.md alone, pass the kernel's
conformance suites, and register through the same hooks the built-ins use."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "sid-plugin-example"


@pytest.fixture(scope="module")
def example():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import sid_plugin_example
        from sid_plugin_example import launchers, stores

        yield sid_plugin_example, stores, launchers
    finally:
        sys.path.remove(str(EXAMPLE))


def test_npz_dir_store_conforms(example, tmp_path):
    from sidcore.testing.stores import check_store

    _, stores, _ = example
    root = tmp_path / "ckpt"
    cfg = stores.NpzDirConfig(fsync=False)

    def corrupt(store, name):
        p = root / f"{name}.npz"
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0xFF
        p.write_bytes(bytes(data))

    check_store(lambda: stores.build(cfg, uri=f"npz://{root}"),
                uncommit=lambda store, name: (root / f"{name}.json").unlink(), corrupt=corrupt)


def test_nice_local_launcher_conforms(example):
    from sidcore.testing.launchers import check_launcher

    _, _, launchers = example
    plan = check_launcher(lambda: launchers.build(launchers.NiceLocalConfig(niceness=5)))
    assert plan.steps[0].argv[:3] == ("nice", "-n", "5")


def test_example_registers_three_kinds(example):
    from sidcore.plugins import load_plugins

    module, _, _ = example
    plugins = load_plugins(entry_points=False, extra=[("example", module)], strict=True)
    reg = plugins.registry
    assert reg.get("metric", "mrr") and reg.get("store", "npz_dir")
    assert reg.get("launcher", "nice_local")
    assert reg.store_for_uri("npz:///tmp/x").name == "npz_dir"
