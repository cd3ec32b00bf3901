"""Normalisers on distinct prefixes only (`distinct_rows`): the index table by hand, and the same
log-probs, loss, gradients and optimizer update as computing every row, with and without gradient
accumulation. The same for the rollout's known log-probs (``rollout_logp``: no policy vocabulary
pass), and proof that the given values are the ones used.

The data share prefixes the way beams of one prompt do (equal first tokens, equal two-token
prefixes), and also carry an early EOS and ``-1`` padding, which must stay distinct rows where their
prefixes differ.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from sidcore.model import Qwen2Config, Qwen2ForCausalLM
from sidcore.model.merge import make_merge
from sidcore.rl.config import RLConfig
from sidcore.rl.group_forward import distinct_rows, group_batch, group_token_logps
from sidcore.rl.step import make_update_fn

EOS = PAD = 3
ROWS, REAL = 9000, 8990


def test_distinct_rows_by_hand():
    # one prompt, G = 3, T = 3 (q = 2 fed tokens): prefixes (5), (5,6) | (5), (5,7) | (8), (8,6)
    tokens = np.array([[[5, 6, EOS], [5, 7, EOS], [8, 6, EOS]]])
    rows, row_of = distinct_rows(tokens)
    # local rows: 0 prompt; g0: 1 (5), 2 (5,6); g1: 3 (5) = row 1, 4 (5,7); g2: 5 (8), 6 (8,6)
    np.testing.assert_array_equal(row_of, [[0, 1, 2, 1, 3, 4, 5]])
    np.testing.assert_array_equal(rows, [[0, 1, 2, 4, 5, 6, 0]])  # 6 distinct, bucket 8 capped at R = 7
    rows, row_of = distinct_rows(tokens, bucket=2)
    np.testing.assert_array_equal(rows, [[0, 1, 2, 4, 5, 6]])
    # two prompts: the count pads to the larger one, and nothing is shared across prompts
    two = np.concatenate([tokens, np.array([[[5, 6, EOS]] * 3])])
    rows, row_of = distinct_rows(two, bucket=1)
    assert rows.shape == (2, 6)
    np.testing.assert_array_equal(row_of[1], [0, 1, 2, 1, 2, 1, 2])
    np.testing.assert_array_equal(rows[1], [0, 1, 2, 0, 0, 0])


def _model(seed):
    cfg = Qwen2Config(vocab_size=ROWS, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    gd, st = nnx.split(Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(seed)))
    params = jax.tree.map(lambda x: x * 8.0 if x.ndim == 2 else x, nnx.to_pure_dict(st))
    return make_merge(gd, st), params


def _beam_like(b, g, t, seed):
    """Completions sharing prefixes like beams: few first tokens, some shared second tokens."""
    rng = np.random.default_rng(seed)
    comp = np.empty((b, g, t), np.int32)
    for i in range(b):
        firsts = rng.integers(10, REAL, 2)
        seconds = rng.integers(10, REAL, 3)
        for j in range(g):
            comp[i, j, 0] = firsts[j % 2]
            comp[i, j, 1] = seconds[j % 3]
            comp[i, j, 2:] = rng.integers(10, REAL, t - 2)
    comp[:, :, -1] = EOS
    comp[0, 1, 2] = EOS  # early EOS
    comp[1, 3, 3:] = -1  # padding
    return comp


def _close(a, b, rtol=1e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(float(np.abs(b).max()), 1e-30)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


def test_logps_equal_with_distinct_rows():
    merge, params = _model(0)
    b, g, t = 2, 6, 5
    lens = np.array([7, 4], np.int32)
    ids = np.full((b, 9), PAD, np.int32)
    ids[0, :7], ids[1, :4] = np.arange(20, 27), np.arange(40, 44)
    comp = _beam_like(b, g, t, 0)
    rows, row_of = distinct_rows(comp)
    assert rows.shape[1] < 1 + g * (t - 1)  # something was shared
    batch = group_batch(jnp.asarray(ids), jnp.asarray(lens), jnp.asarray(comp), pad_id=PAD, eos_id=EOS)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=(b * g, t)), jnp.float32)

    def f(p, bt):
        return (group_token_logps(merge(p), bt, REAL, num_generations=g) * weights).sum()

    want, want_g = jax.jit(jax.value_and_grad(f))(params, batch)
    got, got_g = jax.jit(jax.value_and_grad(f))(params, dict(batch, rows=rows, row_of=row_of))
    _close(got, want)
    lp_want = group_token_logps(merge(params), batch, REAL, num_generations=g)
    lp_got = group_token_logps(merge(params), dict(batch, rows=rows, row_of=row_of), REAL, num_generations=g)
    _close(lp_got, lp_want)
    scale = max(float(np.abs(np.asarray(x)).max()) for x in jax.tree.leaves(want_g))
    for a, c in zip(jax.tree.leaves(got_g), jax.tree.leaves(want_g)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-4, atol=1e-5 * scale)


B4, G4, T5 = 4, 4, 5


def _prompts():
    """``[4, 8]`` right-padded prompts of lengths 7, 4, 6, 5."""
    lens = np.array([7, 4, 6, 5], np.int32)
    ids = np.full((B4, 8), PAD, np.int32)
    for i, n in enumerate(lens):
        ids[i, :n] = np.arange(30 + 10 * i, 30 + 10 * i + n)
    return ids, lens


def _updates_agree(model, accumulate, args, extra):
    """One SGD step (update = -gradient, so linear and comparable) with and without ``extra`` inputs:
    the same loss, gradient norm, KL and parameter change."""
    merge, params = model
    cfg = RLConfig(num_generations=G4, batch_size=B4 * G4, beta=0.04, gradient_accumulation_steps=accumulate)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1.0))
    update = jax.jit(make_update_fn(merge, tx, cfg, real_vocab=REAL, pad_id=PAD, eos_id=EOS, shared_prefix=True))
    p0, _, m0 = update(params, tx.init(params), *args)
    p1, _, m1 = update(params, tx.init(params), *args, *extra)
    _close(m1["loss"], m0["loss"])
    _close(m1["grad_norm"], m0["grad_norm"])
    _close(m1["kl_seq"], m0["kl_seq"], rtol=1e-4)
    d1 = [np.asarray(a) - np.asarray(x) for a, x in zip(jax.tree.leaves(p1), jax.tree.leaves(params))]
    d0 = [np.asarray(a) - np.asarray(x) for a, x in zip(jax.tree.leaves(p0), jax.tree.leaves(params))]
    scale = max(float(np.abs(x).max()) for x in d0)
    assert scale > 1e-4  # the step moved the parameters
    for a, c in zip(d1, d0):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_update_equal_with_distinct_rows(accumulate):
    model = _model(0)
    _, ref = _model(1)
    ids, lens = _prompts()
    comp = _beam_like(B4, G4, T5, 2)
    adv = np.random.default_rng(3).normal(size=(B4, G4)).astype(np.float32)
    args = (ref, jnp.asarray(ids), jnp.asarray(lens), jnp.asarray(comp), jnp.asarray(adv))
    _updates_agree(model, accumulate, args, (None, distinct_rows(comp)))


@pytest.mark.parametrize("accumulate,distinct", [(1, False), (1, True), (2, True)])
def test_update_equal_with_rollout_logps(accumulate, distinct):
    merge, params = _model(0)
    _, ref = _model(1)
    b, g, t = B4, G4, T5
    ids, lens = _prompts()
    comp = _beam_like(b, g, t, 4)
    comp[1, 3, 3:] = 77  # the rollout path this reuse serves has no padding
    adv = np.random.default_rng(5).normal(size=(b, g)).astype(np.float32)
    batch = group_batch(jnp.asarray(ids), jnp.asarray(lens), jnp.asarray(comp), pad_id=PAD, eos_id=EOS)
    # the policy's own log-probs of the completions, as a rollout at these parameters reports them
    known = np.asarray(group_token_logps(merge(params), batch, REAL, num_generations=g)).reshape(b, g, t)
    rows = distinct_rows(comp) if distinct else None

    shifted = known.copy()
    shifted[2, 1, 3] += 0.5
    got = group_token_logps(merge(params), dict(batch, rollout_logp=jnp.asarray(shifted).reshape(b * g, t),
                                                **({} if rows is None else {"rows": rows[0], "row_of": rows[1]})),
                            REAL, num_generations=g)
    diff = np.asarray(got).reshape(b, g, t) - known
    # the value comes from the given log-probs: token 3 of completion (2, 1) reads its shifted value (its
    # normaliser, of the unique prefix before it, is derived from it); every other position is unchanged
    assert abs(diff[2, 1, 3] - 0.5) < 1e-4
    diff[2, 1, 3] = 0.0
    assert float(np.abs(diff).max()) < 1e-4

    args = (ref, jnp.asarray(ids), jnp.asarray(lens), jnp.asarray(comp), jnp.asarray(adv))
    _updates_agree((merge, params), accumulate, args, (None, rows, jnp.asarray(known)))


def test_logsumexp_given_differentiates_like_the_log_sum_exp():
    from sidcore.model.lse import chunked_logsumexp, logsumexp_given

    rng = np.random.default_rng(7)
    h = jnp.asarray(rng.normal(size=(5, 16)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(1010, 16)), jnp.float32)  # 1000 real rows, 10 padding rows
    g = jnp.asarray(rng.normal(size=(5,)), jnp.float32)
    want = chunked_logsumexp(h, w, 1000, 96)
    got = logsumexp_given(h, w, want + 0.0, 1000, 96)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))  # the given value, as is
    gw = jax.grad(lambda a, b: (chunked_logsumexp(a, b, 1000, 96) * g).sum(), argnums=(0, 1))(h, w)
    gg = jax.grad(lambda a, b: (logsumexp_given(a, b, jax.lax.stop_gradient(chunked_logsumexp(a, b, 1000, 96)),
                                                1000, 96) * g).sum(), argnums=(0, 1))(h, w)
    for a, c in zip(gg, gw):
        _close(a, c)
    assert float(np.abs(np.asarray(gg[1])[1000:]).max()) == 0.0  # padding rows get no gradient
