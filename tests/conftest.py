"""Shared test setup: no network, no plugin env leaking in (every CLI invocation loads its own plugins)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _clean_plugin_env(monkeypatch):
    for var in ("SID_DISABLE_PLUGINS", "SID_LOAD_PLUGINS", "SID_TRACE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    yield
