"""`build_catalog`: distinct SIDs as token ids, collisions, suffix, and its error paths."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from sidcore.data.catalog import build_catalog
from sidcore.data.minionerec import read_info
from sidcore.errors import DataError
from sidcore.interfaces import SidCatalog


def test_industrial_catalog(sid_tokenizer, sample_paths):
    cat = build_catalog(sample_paths["info"], sample_paths["index"], sid_tokenizer)
    assert isinstance(cat, SidCatalog)
    assert len(cat.sids) == len(set(cat.sids)) == 3670
    assert cat.token_ids.shape == (3670, 3) and cat.token_ids.dtype == np.int32
    assert cat.suffix_ids == (198,)
    assert cat.sids[0] == "<a_236><b_231><c_226>"
    assert cat.token_ids[0].tolist() == sid_tokenizer.convert_tokens_to_ids(["<a_236>", "<b_231>", "<c_226>"])
    assert cat.token_ids.min() >= 151665 and cat.token_ids.max() < 151665 + 560
    # collisions: 3686 items over 3670 SIDs
    assert sum(len(v) for v in cat.items_per_sid.values()) == 3686
    counts = Counter(e.sid for e in read_info(sample_paths["info"]))
    shared = {s for s, n in counts.items() if n > 1}
    assert {s for s, v in cat.items_per_sid.items() if len(v) > 1} == shared and len(shared) == 15
    # each row decodes back to its SID
    assert sid_tokenizer.decode(cat.token_ids[123].tolist()) == cat.sids[123]


def test_catalog_needs_sid_tokens(fresh_tokenizer, sample_paths):
    with pytest.raises(DataError, match=r"tokenizer lacks SID tokens"):
        build_catalog(sample_paths["info"], sample_paths["index"], fresh_tokenizer())


def test_catalog_accepts_mixed_depth_padded_with_minus_one(tmp_path, sid_tokenizer):
    info = tmp_path / "info.txt"
    info.write_text("<a_236><b_231><c_226>\tA\t0\n<a_236><b_231>\tB\t1\n")
    index = tmp_path / "x.index.json"
    index.write_text('{"0": ["<a_236>", "<b_231>", "<c_226>"], "1": ["<a_236>", "<b_231>"]}')
    cat = build_catalog(info, index, sid_tokenizer)
    ids = sid_tokenizer.convert_tokens_to_ids(["<a_236>", "<b_231>", "<c_226>"])
    assert cat.token_ids.tolist() == [ids, ids[:2] + [-1]]
