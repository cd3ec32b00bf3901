"""Fixtures for the data tests: the bundled sample's paths and the bundled Qwen2.5 tokenizer.

The tokenizer is decompressed into a per-session temporary cache (never ``~/.cache``); loading it
takes about a second, so the SID-extended tokenizer is shared by the whole session and tests that
need a pristine one call ``fresh_tokenizer()``.
"""

from __future__ import annotations

import pytest

CATEGORY = "Industrial_and_Scientific"


@pytest.fixture(scope="session")
def sample_paths():
    from sidcore.data.minionerec import bundled_data_dir, split_paths

    return split_paths(bundled_data_dir(), CATEGORY)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    from sidcore.data.tokenizer import bundled_tokenizer_dir

    return bundled_tokenizer_dir(cache_dir=tmp_path_factory.mktemp("sid_cache"))


@pytest.fixture(scope="session")
def fresh_tokenizer(tokenizer_dir):
    """Factory: a newly loaded bundled tokenizer without SID tokens."""
    from sidcore.data.tokenizer import load_tokenizer

    def make(padding_side: str = "right"):
        return load_tokenizer(str(tokenizer_dir), padding_side=padding_side)

    return make


@pytest.fixture(scope="session")
def sid_tokenizer(fresh_tokenizer, sample_paths):
    """The bundled tokenizer with the Industrial SID tokens added (shared; do not mutate)."""
    from sidcore.data.minionerec import read_index
    from sidcore.data.tokenizer import add_sid_tokens

    tok = fresh_tokenizer()
    add_sid_tokens(tok, read_index(sample_paths["index"]))
    return tok
