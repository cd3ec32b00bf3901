"""Fixtures of the SID-construction tests: the bundled tokenizer (temporary cache) and a built index."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def qtok_factory(tmp_path_factory):
    """Factory: a fresh bundled Qwen2.5 tokenizer (no SID tokens), decompressed into a temp cache."""
    from sidcore.data.tokenizer import bundled_tokenizer_dir, load_tokenizer

    folder = bundled_tokenizer_dir(cache_dir=tmp_path_factory.mktemp("sid_cache"))
    return lambda: load_tokenizer(str(folder), padding_side="right")
