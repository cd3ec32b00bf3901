"""The ``trie`` decoder on a toy model: brute force, naive reference search, N1 < K, jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sid_decoders.config import TrieConfig
from sid_decoders.trie import build
from sidcore.errors import ConfigError
from sidcore.testing.decoders import (
    TOY_EOS,
    ToyDecodeModel,
    catalog_paths,
    check_decoder,
    make_prompts,
    path_scores,
    random_catalog,
    reference_trie_search,
)


@pytest.mark.parametrize("depth, n_items", [(2, 12), (3, 14), (4, 10)])
def test_conformance(depth, n_items):
    check_decoder(build, TrieConfig(), constrained=True, num_beams=4, depth=depth, n_items=n_items)


def _decode(decoder, model, ids, lens, k):
    fn = jax.jit(lambda i, n: decoder.decode(model, i, n, num_beams=k))
    tokens, scores = fn(jnp.asarray(ids), jnp.asarray(lens))
    return np.asarray(tokens), np.asarray(scores)


def test_full_ranking_equals_brute_force_40_items_depth3():
    catalog = random_catalog(40, 3, seed=3, first_tokens=4)
    model = ToyDecodeModel(64, seed=3)
    ids, lens = make_prompts(2, 6, seed=3)
    paths = catalog_paths(catalog, TOY_EOS)
    tokens, scores = _decode(build(TrieConfig(), catalog=catalog, eos_id=TOY_EOS), model, ids, lens, 40)
    brute = path_scores(model, ids, lens, paths)  # [B, N]
    order = np.argsort(-brute, axis=1)
    np.testing.assert_array_equal(tokens, paths[order])
    np.testing.assert_allclose(scores, np.take_along_axis(brute, order, 1), atol=1e-5)


def test_pruning_matches_naive_reference_and_brute_force_scores():
    catalog = random_catalog(40, 3, seed=4)
    model = ToyDecodeModel(64, seed=4, scale=4.0)
    ids, lens = make_prompts(3, 5, seed=4)
    paths = catalog_paths(catalog, TOY_EOS)
    tokens, scores = _decode(build(TrieConfig(), catalog=catalog, eos_id=TOY_EOS), model, ids, lens, 5)
    ref_t, ref_s = reference_trie_search(model, ids, lens, paths, 5)
    np.testing.assert_array_equal(tokens, ref_t)
    np.testing.assert_allclose(scores, ref_s, atol=1e-5)
    brute = path_scores(model, ids, lens, paths)
    row_of = {tuple(p): i for i, p in enumerate(paths.tolist())}
    for b in range(3):
        rows = [row_of[tuple(x)] for x in tokens[b].tolist()]  # KeyError = not a catalog item
        assert len(set(rows)) == 5
        np.testing.assert_allclose(scores[b], brute[b, rows], atol=1e-5)


def test_fewer_first_tokens_than_beams():
    # 3 distinct first tokens, 10 beams (Industrial: 48 first tokens < 50 beams).
    catalog = random_catalog(30, 3, seed=5, first_tokens=3)
    assert len(np.unique(catalog.token_ids[:, 0])) == 3
    model = ToyDecodeModel(64, seed=5)
    ids, lens = make_prompts(2, 4, seed=5)
    paths = catalog_paths(catalog, TOY_EOS)
    tokens, scores = _decode(build(TrieConfig(), catalog=catalog, eos_id=TOY_EOS), model, ids, lens, 10)
    assert np.all(np.isfinite(scores))
    catalog_set = {tuple(p) for p in paths.tolist()}
    for b in range(2):
        assert len({tuple(x) for x in tokens[b].tolist()}) == 10
        assert all(tuple(x) in catalog_set for x in tokens[b].tolist())
    ref_t, ref_s = reference_trie_search(model, ids, lens, paths, 10)
    np.testing.assert_array_equal(tokens, ref_t)
    np.testing.assert_allclose(scores, ref_s, atol=1e-5)


def test_beams_equal_to_catalog_size_with_a_single_first_token():
    catalog = random_catalog(6, 2, seed=6, first_tokens=1)
    model = ToyDecodeModel(64, seed=6)
    ids, lens = make_prompts(2, 3, seed=6)
    tokens, scores = _decode(build(TrieConfig(), catalog=catalog, eos_id=TOY_EOS), model, ids, lens, 6)
    assert np.all(np.isfinite(scores))
    every = sorted(map(tuple, catalog_paths(catalog, TOY_EOS).tolist()))
    assert sorted(map(tuple, tokens[0].tolist())) == every


def test_more_beams_than_items_is_a_config_error():
    catalog = random_catalog(5, 2, seed=0)
    decoder = build(TrieConfig(), catalog=catalog, eos_id=TOY_EOS)
    ids, lens = make_prompts(1, 3)
    with pytest.raises(ConfigError, match="num_beams=6 but the catalog has 5 items"):
        decoder.decode(ToyDecodeModel(64), jnp.asarray(ids), jnp.asarray(lens), num_beams=6)


def test_catalog_ids_beyond_vocab_is_a_config_error():
    catalog = random_catalog(5, 2, seed=0)
    decoder = build(TrieConfig(), catalog=catalog, eos_id=TOY_EOS)
    ids, lens = make_prompts(1, 3)
    with pytest.raises(ConfigError, match="vocabulary has 20 rows"):
        decoder.decode(ToyDecodeModel(20), jnp.asarray(ids % 20), jnp.asarray(lens), num_beams=2)


def test_traced_once_per_shape_and_no_host_callbacks():
    catalog = random_catalog(20, 3, seed=7)
    model = ToyDecodeModel(64, seed=7)
    decoder = build(TrieConfig(), catalog=catalog, eos_id=TOY_EOS)
    assert decoder.max_new_tokens() == 5
    traces = []

    @jax.jit
    def run(ids, lens):
        traces.append(ids.shape)
        return decoder.decode(model, ids, lens, num_beams=4)

    for seed in range(3):
        ids, lens = make_prompts(2, 6, seed=seed)
        run(jnp.asarray(ids), jnp.asarray(lens))
    ids, lens = make_prompts(2, 8)
    run(jnp.asarray(ids), jnp.asarray(lens))
    assert traces == [(2, 6), (2, 8)]
    jaxpr = str(jax.make_jaxpr(lambda i, n: decoder.decode(model, i, n, num_beams=4))(ids, lens))
    assert "callback" not in jaxpr and "while" not in jaxpr  # static levels, no host round trips
