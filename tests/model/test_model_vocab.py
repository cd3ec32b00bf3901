"""Vocabulary resize (grow with mean / normal init, shrink by slicing) and pad arithmetic."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from sidcore.model import padded_vocab_size, resize_vocab


def _tables(model):
    emb = np.asarray(model.model.embed_tokens.embedding[...])
    head = None if model.lm_head is None else np.asarray(model.lm_head.kernel[...])
    return emb, head


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("init", ["mean", "normal"])
def test_grow_keeps_old_rows(make_tiny, tied, init):
    model = make_tiny(tied=tied, seed=21)
    emb0, head0 = _tables(model)
    resize_vocab(model, 140, init=init, rng_seed=1)
    emb, head = _tables(model)
    assert emb.shape == (140, 64) and model.cfg.vocab_size == 140 and model.vocab_size == 140
    np.testing.assert_array_equal(emb[:128], emb0)
    new = emb[128:]
    if init == "mean":
        # transformers mean-resizing: N(mean, 1e-9 * cov) -> within a few 1e-5 std of the mean.
        assert np.abs(new - emb0.mean(0)).max() < 1e-3 * emb0.std()
        assert np.abs(new - emb0.mean(0)).max() > 0  # sampled, not a copy
    else:
        assert abs(new.std() - 0.02) < 0.005 and abs(new.mean()) < 0.005
    if tied:
        assert head is None
    else:
        assert head.shape == (64, 140)
        np.testing.assert_array_equal(head[:, :128], head0)
        if init == "mean":
            assert np.abs(head[:, 128:] - head0.mean(1, keepdims=True)).max() < 1e-3 * head0.std()
    ids = jnp.asarray([[1, 130, 139]])
    assert model(ids).shape == (1, 3, 140)


@pytest.mark.parametrize("tied", [True, False])
def test_shrink_slices(make_tiny, tied):
    model = make_tiny(tied=tied, seed=22)
    emb0, head0 = _tables(model)
    ids = jnp.asarray([[1, 5, 9, 100]])
    before = np.asarray(model(ids))
    resize_vocab(model, 120)
    emb, head = _tables(model)
    np.testing.assert_array_equal(emb, emb0[:120])
    if not tied:
        np.testing.assert_array_equal(head, head0[:, :120])
    np.testing.assert_allclose(np.asarray(model(ids)), before[..., :120], atol=1e-6)


def test_padded_vocab_size():
    assert padded_vocab_size(152225, 4) == 152228
    assert padded_vocab_size(152225, 8) == 152232
    assert padded_vocab_size(152225, 1) == 152225
    assert padded_vocab_size(152232, 8) == 152232
