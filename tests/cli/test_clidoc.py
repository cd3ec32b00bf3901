"""docs/cli.md is generated from the CLI's --help and must not go stale."""

from __future__ import annotations

from pathlib import Path

from sidcore.cli.doc import render


def test_cli_doc_is_current(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    doc = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    assert render() == doc, "docs/cli.md is stale: run `COLUMNS=100 python -m sidcore.cli.doc > docs/cli.md`"
