"""The per-level CSR trie built from a catalog, checked against hand-built tables."""

from __future__ import annotations

import numpy as np
import pytest

from sidcore.decoding.trie import SidTrie
from sidcore.errors import ConfigError, DataError


def test_tables_match_hand_built_example():
    # Paths (SID + suffix 9 + eos 1): 3 items, first tokens 20 (x2) and 10.
    ids = np.array([[20, 31], [10, 30], [20, 30]])
    trie = SidTrie.from_token_ids(ids, suffix_ids=[9], eos_id=1)
    assert trie.path_length == 4 and trie.depth == 2 and trie.num_items == 3
    lv0, lv1, lv2, lv3 = trie.levels
    assert lv0.tokens.tolist() == [10, 20] and lv0.start.tolist() == [0] and lv0.count.tolist() == [2]
    # level-1 nodes: (10,), (20,); edges: (10,30), (20,30), (20,31)
    assert lv1.tokens.tolist() == [30, 30, 31]
    assert lv1.start.tolist() == [0, 1] and lv1.count.tolist() == [1, 2]
    assert lv1.width == 2
    assert lv2.tokens.tolist() == [9, 9, 9] and lv2.count.tolist() == [1, 1, 1]
    assert lv3.tokens.tolist() == [1, 1, 1]
    # sorted leaves: (10,30), (20,30), (20,31) -> catalog rows 1, 2, 0
    assert trie.leaf_rows.tolist() == [1, 2, 0]
    tokens, child = lv1.children(np.array([1, 0, -1]))
    assert tokens.tolist() == [[30, 31], [30, -1], [-1, -1]]
    assert child.tolist() == [[1, 2], [0, -1], [-1, -1]]


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_paths_round_trip_any_depth(depth):
    rng = np.random.default_rng(depth)
    ids = np.unique(rng.integers(0, 4, size=(60, depth)), axis=0)
    ids = ids[rng.permutation(len(ids))]
    trie = SidTrie.from_token_ids(ids, suffix_ids=[], eos_id=99)
    np.testing.assert_array_equal(trie.paths(), np.concatenate([ids, np.full((len(ids), 1), 99)], 1))
    # Node counts: distinct prefixes of each length.
    for t, level in enumerate(trie.levels[:depth]):
        assert level.num_nodes == (1 if t == 0 else len({tuple(r[:t]) for r in ids.tolist()}))
        assert level.tokens.size == len({tuple(r[: t + 1]) for r in ids.tolist()})


def test_duplicate_rows_rejected():
    with pytest.raises(DataError, match="row 2 repeats"):
        SidTrie.from_token_ids(np.array([[1, 2], [3, 4], [1, 2]]), suffix_ids=[5], eos_id=0)


@pytest.mark.parametrize("bad", [np.zeros((0, 3)), np.zeros((3,)), np.array([[1, -2]])])
def test_bad_shapes_rejected(bad):
    with pytest.raises(ConfigError):
        SidTrie.from_token_ids(bad, suffix_ids=[5], eos_id=0)
