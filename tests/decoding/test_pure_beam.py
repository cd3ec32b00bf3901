"""The ``pure_beam`` decoder: HF-semantics open-ended beam search and the fixed-length variant."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sid_decoders.config import PureBeamConfig
from sid_decoders.pure_beam import build
from sidcore.errors import ConfigError
from sidcore.testing.decoders import (
    TOY_EOS,
    TOY_SUFFIX,
    ToyDecodeModel,
    check_decoder,
    make_prompts,
    random_catalog,
    reference_trie_search,
)


@pytest.mark.parametrize(
    "cfg, lp",
    [
        (PureBeamConfig(fixed_length=True), 0.0),
        (PureBeamConfig(max_new_tokens=4), 0.0),
        (PureBeamConfig(max_new_tokens=4, length_penalty=1.0, early_stopping=False), 1.0),
    ],
)
def test_conformance(cfg, lp):
    check_decoder(build, cfg, constrained=False, num_beams=4, length_penalty=lp)


def _decode(decoder, model, ids, lens, k):
    fn = jax.jit(lambda i, n: decoder.decode(model, i, n, num_beams=k))
    tokens, scores = fn(jnp.asarray(ids), jnp.asarray(lens))
    return np.asarray(tokens), np.asarray(scores)


def test_fixed_length_equals_naive_search_over_all_sequences():
    # Free levels = a "catalog" of every depth-2 sequence over the real vocabulary, then suffix + EOS.
    model = ToyDecodeModel(40, seed=11, real_vocab_size=36, scale=4.0)
    catalog = random_catalog(6, 2, seed=11)
    decoder = build(PureBeamConfig(fixed_length=True), catalog=catalog, eos_id=TOY_EOS)
    assert decoder.max_new_tokens() == 2 + len(TOY_SUFFIX) + 1
    ids, lens = make_prompts(2, 4, seed=11, low=0, high=36)
    tokens, scores = _decode(decoder, model, ids, lens, 5)
    every = np.array([[a, b, *TOY_SUFFIX, TOY_EOS] for a, b in itertools.product(range(36), repeat=2)])
    ref_t, ref_s = reference_trie_search(model, ids, lens, every, 5)
    np.testing.assert_array_equal(tokens, ref_t)
    np.testing.assert_allclose(scores, ref_s, atol=1e-5)


def naive_hf_beam(model, prompt, k, eos, t_max, lp, early_stopping):
    """transformers 5.x ``_beam_search`` for one prompt, written with Python lists."""
    v = model.vocab_size
    running = [(0.0, ())] + [(-1e9, ())] * (k - 1)
    pool: list[tuple[float, tuple[int, ...]]] = []
    still_open = True
    for t in range(t_max):
        cands = []
        for bi, (s, p) in enumerate(running):
            logp = model.np_logp(prompt, list(p))[-1]
            cands += [(s + logp[tok], bi * v + tok, p + (tok,)) for tok in range(v)]
        cands.sort(key=lambda c: (-c[0], c[1]))
        top = cands[: 2 * k]
        hits = [c[2][-1] == eos or t + 1 == t_max for c in top]
        if still_open and not (early_stopping is True and len(pool) == k):
            pool += [(c[0] / (t + 1) ** lp, c[2]) for r, (c, h) in enumerate(zip(top, hits)) if h and r < k]
            pool = sorted(pool, key=lambda e: -e[0])[:k]
        running = [(c[0], c[2]) for c, h in zip(top, hits) if not h][:k]
        if all(hits):
            break
        if len(pool) == k:
            best_len = t_max if (early_stopping == "never" and lp > 0) else t + 1
            if early_stopping is True or running[0][0] / best_len**lp <= pool[-1][0]:
                still_open = False
        if not still_open:
            break
    return pool


@pytest.mark.parametrize("lp, es", [(0.0, True), (0.0, False), (1.0, False), (1.0, "never"), (-0.5, True)])
def test_open_beam_equals_naive_hf_algorithm(lp, es):
    model = ToyDecodeModel(24, seed=12, scale=2.5)
    ids, lens = make_prompts(3, 5, seed=12, low=0, high=24)
    # Make EOS the token the model likes best after the prompts, so hypotheses finish at many lengths.
    eos = int(np.argmax(sum(model.np_logp(ids[b, : lens[b]], [])[0] for b in range(3))))
    catalog = random_catalog(4, 2, seed=0, base=0, level_size=4)
    decoder = build(PureBeamConfig(max_new_tokens=5, length_penalty=lp, early_stopping=es),
                    catalog=catalog, eos_id=eos)
    tokens, scores = _decode(decoder, model, ids, lens, 4)
    lengths_seen = set()
    for b in range(3):
        pool = naive_hf_beam(model, ids[b, : lens[b]], 4, eos, 5, lp, es)
        assert len(pool) == 4
        for j, (s, seq) in enumerate(pool):
            got = [x for x in tokens[b, j].tolist() if x >= 0]
            assert got == list(seq), (b, j, tokens[b], pool)
            assert tokens[b, j, len(seq):].tolist() == [-1] * (5 - len(seq))
            lengths_seen.add(len(seq))
        np.testing.assert_allclose(scores[b], [s for s, _ in pool], atol=1e-5)
    assert len(lengths_seen) > 1  # the test exercises early EOS as well as max length


def test_padded_vocab_never_emitted_and_bad_beams_rejected():
    model = ToyDecodeModel(32, seed=13, real_vocab_size=8)
    catalog = random_catalog(4, 2, seed=0, base=0, level_size=4)
    decoder = build(PureBeamConfig(max_new_tokens=4), catalog=catalog, eos_id=1)
    ids, lens = make_prompts(2, 3, seed=13, low=0, high=8)
    tokens, _ = _decode(decoder, model, ids, lens, 4)
    assert tokens.max() < 8
    with pytest.raises(ConfigError, match="num_beams=33"):
        decoder.decode(model, jnp.asarray(ids), jnp.asarray(lens), num_beams=33)


def test_config_validation_and_depth_default():
    with pytest.raises(ValueError, match="early_stopping"):
        PureBeamConfig(early_stopping="sometimes")
    catalog = random_catalog(4, 3, seed=0)
    assert build(PureBeamConfig(fixed_length=True), catalog=catalog, eos_id=1).max_new_tokens() == 5
    two = build(PureBeamConfig(fixed_length=True, sid_depth=2), catalog=catalog, eos_id=1)
    assert two.max_new_tokens() == 4
    assert build(PureBeamConfig(max_new_tokens=7), catalog=catalog, eos_id=1).max_new_tokens() == 7
