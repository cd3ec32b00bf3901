"""The shared-prefix update layout (one tree-masked row per prompt, `sidcore.rl.group_forward`) gives
the full-row layout's per-token log-probs, loss and gradients within float32 rounding; and the
chunked log-sum-exp's custom backward equals the autodiff of a plain ``logsumexp``.

Cases the layouts could disagree on are in the data: prompts of different lengths (right padding
inside the tree row), an early EOS, ``-1`` padded completion tokens, a padded vocabulary (rows past
``real_vocab``), several vocabulary chunks with an overlapping last chunk, tied and untied heads,
Qwen2 and Qwen3 attention.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sidcore.model import Qwen2Config, Qwen2ForCausalLM
from sidcore.model.lse import chunked_logsumexp
from sidcore.model.merge import make_merge
from sidcore.rl.group_forward import group_batch, group_token_logps
from sidcore.rl.loss import completion_batch, make_loss_fn, token_logps

EOS = PAD = 3
B, G, T = 3, 4, 5
LENS = [9, 4, 6]
ROWS, REAL = 9000, 8990  # > one 8192 chunk, with padded rows past the real vocabulary


def _close(a, b, rtol=1e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(float(np.abs(b).max()), 1e-30)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("n,real,chunk", [(7, 1000, 96), (5, 1000, 1000), (4, 1000, 4096)])
def test_chunked_logsumexp_value_and_gradients(n, real, chunk):
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    h = jax.random.normal(k[0], (n, 16))
    w = jax.random.normal(k[1], (real + 24, 16))  # 24 padded rows: never counted, zero gradient
    g = jax.random.normal(k[2], (n,))

    def ours(h, w):
        return (chunked_logsumexp(h, w, real, chunk) * g).sum()

    def plain(h, w):
        return (jax.nn.logsumexp(h @ w[:real].T, axis=-1) * g).sum()

    _close(chunked_logsumexp(h, w, real, chunk), jax.nn.logsumexp(h @ w[:real].T, axis=-1))
    (dh, dw), (rh, rw) = jax.grad(ours, argnums=(0, 1))(h, w), jax.grad(plain, argnums=(0, 1))(h, w)
    _close(dh, rh)
    _close(dw, rw)
    assert np.all(np.asarray(dw)[real:] == 0.0)


def _model(model_type, tied, seed):
    cfg = Qwen2Config(vocab_size=ROWS, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied, model_type=model_type)
    model = Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(seed))
    gd, st = nnx.split(model)
    # sharper distributions than the 0.02 init, so the log-probs and KL are far from uniform
    params = jax.tree.map(lambda x: x * 8.0 if x.ndim == 2 else x, nnx.to_pure_dict(st))
    return make_merge(gd, st), params


def _data():
    rng = np.random.default_rng(0)
    ids = np.full((B, max(LENS) + 3), PAD, np.int32)  # extra right padding past the longest prompt
    for b, n in enumerate(LENS):
        ids[b, :n] = rng.integers(10, REAL, n)
    comp = rng.integers(10, REAL, (B, G, T)).astype(np.int32)
    comp[:, :, -1] = EOS
    comp[0, 1, 2] = EOS  # early EOS: the tokens after it are masked out
    comp[2, 3, 3:] = -1  # padded completion tokens (no EOS in this row)
    adv = rng.normal(size=(B * G,)).astype(np.float32)
    return jnp.asarray(ids), jnp.asarray(LENS, jnp.int32), jnp.asarray(comp), jnp.asarray(adv)


@pytest.mark.parametrize("model_type,tied,fused,agg", [
    ("qwen2", True, True, "sequence-mean-token-mean"),  # upstream's setting
    ("qwen3", False, False, "gspo"),  # untied head, dense log-softmax
    ("qwen2", False, True, "dapo"),
])
def test_shared_prefix_matches_full_rows(model_type, tied, fused, agg):
    merge, params = _model(model_type, tied, 0)
    _, ref_params = _model(model_type, tied, 1)
    ids, lens, comp, adv = _data()
    full = completion_batch(ids, lens, comp, pad_id=PAD, eos_id=EOS)
    tree = group_batch(ids, lens, comp, pad_id=PAD, eos_id=EOS)
    np.testing.assert_array_equal(tree["mask"], full["mask"])
    np.testing.assert_array_equal(np.asarray(full["mask"]).sum(1)[[1, 11]], [3, 3])
    assert tree["input_ids"].shape == (B, ids.shape[1] + G * (T - 1))

    def run(batch, logps):
        batch = dict(batch, advantages=adv)
        fn = make_loss_fn(merge, real_vocab=REAL, beta=0.04, aggregation=agg, logps=logps)
        return jax.jit(jax.value_and_grad(fn, has_aux=True))(params, batch, ref_params)

    (f_loss, f_aux), f_grads = run(full, lambda m, bt: token_logps(m, bt, REAL, fused=fused))
    (t_loss, t_aux), t_grads = run(tree, lambda m, bt: group_token_logps(m, bt, REAL, num_generations=G,
                                                                         fused=fused))
    mask = np.asarray(full["mask"])
    _close(np.asarray(t_aux["logp"]) * mask, np.asarray(f_aux["logp"]) * mask)
    _close(t_aux["kl_seq"], f_aux["kl_seq"], rtol=1e-4)  # a difference of close log-probs
    _close(t_loss, f_loss)
    assert float(np.abs(np.asarray(f_aux["kl_seq"])).mean()) > 1e-3  # the KL term is exercised
    flat_t, flat_f = jax.tree.leaves_with_path(t_grads), jax.tree.leaves_with_path(f_grads)
    scale = max(float(np.abs(np.asarray(x)).max()) for _, x in flat_f)
    for (path, a), (_, b) in zip(flat_t, flat_f):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=jax.tree_util.keystr(path))
