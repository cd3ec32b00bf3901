"""The RQ-VAE (`rqvae`): loss formula, straight-through, k-means init, planted hierarchy."""

from __future__ import annotations

import attrs
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sid_quantizers.config import RqvaeConfig
from sid_quantizers.kmeans import fit_kmeans
from sid_quantizers.rqvae import RQVAE, RqvaeQuantizer, kmeans_init, rqvae_loss

TINY = RqvaeConfig(codebook_sizes=[5, 4, 3], layers=[16, 12], e_dim=6, beta=0.25)


def _np_mlp(layers, x):
    for i, lin in enumerate(layers):
        x = x @ np.asarray(lin.kernel[...], np.float64) + np.asarray(lin.bias[...], np.float64)
        if i + 1 < len(layers):
            x = np.maximum(x, 0)
    return x


def test_architecture_matches_upstream_defaults():
    model = RQVAE(2560, RqvaeConfig(), rngs=nnx.Rngs(0))
    enc = [lin.kernel.shape for lin in model.encoder.layers]
    assert enc == [(2560, 2048), (2048, 1024), (1024, 512), (512, 256), (256, 128), (128, 64), (64, 32)]
    assert [lin.kernel.shape for lin in model.decoder.layers] == [(b, a) for a, b in enc[::-1]]
    assert [b.shape for b in model.codebooks] == [(256, 32)] * 3
    k = np.asarray(model.encoder.layers[0].kernel[...])
    assert abs(k.std() / np.sqrt(2 / (2560 + 2048)) - 1) < 0.02  # Xavier normal
    assert not np.asarray(model.encoder.layers[0].bias[...]).any()


def test_loss_terms_equal_the_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 10)).astype(np.float32)
    model = RQVAE(10, TINY, rngs=nnx.Rngs(1))
    total, (recon, quant) = rqvae_loss(model, jnp.asarray(x), beta=0.25, quant_weight=0.7)
    z = _np_mlp(model.encoder.layers, x.astype(np.float64))
    r, zq, levels = z, np.zeros_like(z), []
    for book in model.codebooks:
        c = np.asarray(book[...], np.float64)
        q = c[((r[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)]
        mse = ((q - r) ** 2).mean()
        levels.append(mse + 0.25 * mse)  # MSE(q, sg(r)) + beta * MSE(sg(q), r): equal values
        zq, r = zq + q, r - q
    x_hat = _np_mlp(model.decoder.layers, zq)
    want_recon = ((x_hat - x) ** 2).mean()
    want_quant = np.mean(levels)
    np.testing.assert_allclose(recon, want_recon, rtol=1e-5)
    np.testing.assert_allclose(quant, want_quant, rtol=1e-5)
    np.testing.assert_allclose(total, want_recon + 0.7 * want_quant, rtol=1e-5)


def test_straight_through_and_stop_gradients():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(30, 10)), jnp.float32)
    model = RQVAE(10, TINY, rngs=nnx.Rngs(2))
    graphdef, state = nnx.split(model)

    def terms(st, which):
        m = nnx.merge(graphdef, st)
        total_q, _, pairs = m.quantize(m.encoder(x))
        q, r = pairs[which[1]]
        sg = jax.lax.stop_gradient
        return {"commit": jnp.mean((sg(q) - r) ** 2), "codebook": jnp.mean((q - sg(r)) ** 2),
                "recon": jnp.mean((m.decoder(total_q) - x) ** 2)}[which[0]]

    def enc_norm(g):
        return sum(float(jnp.abs(v).sum()) for v in jax.tree.leaves(nnx.state(g)["encoder"]))

    g0 = jax.grad(terms)(state, ("commit", 0))
    g1 = jax.grad(terms)(state, ("commit", 1))
    assert enc_norm(g0) > 0 and enc_norm(g1) == 0  # deeper residuals are stop-gradient'd (upstream)
    gc = jax.grad(terms)(state, ("codebook", 1))
    assert enc_norm(gc) == 0 and float(jnp.abs(gc["codebooks"][1][...]).sum()) > 0
    gr = jax.grad(terms)(state, ("recon", 0))
    assert enc_norm(gr) > 0  # straight-through: reconstruction trains the encoder
    assert all(float(jnp.abs(gr["codebooks"][i][...]).sum()) == 0 for i in range(3))


def test_kmeans_init_uses_the_first_batch_residuals():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(50, 10)), jnp.float32)
    model = RQVAE(10, TINY, rngs=nnx.Rngs(3))
    key = jax.random.PRNGKey(7)
    kmeans_init(model, x, key=key, iters=30)
    r = model.encoder(x)
    for level, book in enumerate(model.codebooks):
        c, lab, _ = fit_kmeans(jax.random.fold_in(key, level), r, book.shape[0], max_iter=30, tol=1e-4)
        np.testing.assert_allclose(book[...], c, atol=1e-6)
        r = r - c[lab]


def test_planted_hierarchy_level1_recovers_the_partition():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    top, sub = rng.normal(size=(8, 32)) * 4, rng.normal(size=(8, 4, 32)) * 0.5
    a, b = np.arange(640) % 8, (np.arange(640) // 8) % 4
    x = (top[a] + sub[a, b] + 0.1 * rng.normal(size=(640, 32))).astype(np.float32)
    cfg = RqvaeConfig(codebook_sizes=[8, 4, 4], layers=[64, 32], e_dim=16, epochs=150, eval_every=50,
                      kmeans_iters=50, learning_rate=3e-3, warmup_steps=10)
    fitted = RqvaeQuantizer(cfg=cfg).fit(x, seed=0)
    assert metrics.adjusted_rand_score(a, fitted.fit_codes[:, 0]) >= 0.9
    assert [h["epoch"] for h in fitted.history] == [50, 100, 150]
    best = min(h["collision_rate"] for h in fitted.history)
    assert 1 - len(np.unique(fitted.fit_codes, axis=0)) / 640 == pytest.approx(best)


@pytest.mark.parametrize("bs", [40, 16, 13])  # one full batch; 3 full + 8 rows; 3 full + 1 row
def test_scanned_epochs_equal_the_per_batch_loop(bs):
    """`_chunk_fn` (epochs and their batches in one jitted scan, carry donated) = one jitted step per
    batch driven from Python, batches cut from the same host-side permutations (the old path)."""
    from sid_quantizers.rqvae import _chunk_fn, _step_fn, make_optimizer

    x = jnp.asarray(np.random.default_rng(3).normal(size=(40, 10)), jnp.float32)
    cfg = attrs.evolve(TINY, warmup_steps=2, learning_rate=1e-2)
    graphdef, state = nnx.split(RQVAE(10, cfg, rngs=nnx.Rngs(4)))
    tx = make_optimizer(cfg)
    step = _step_fn(graphdef, tx, cfg)
    shuffle = jax.random.PRNGKey(5)
    one = jax.jit(step)
    carry, want = (state, tx.init(state)), []
    for e in range(3):
        perm = jax.random.permutation(jax.random.fold_in(shuffle, e), 40) if bs < 40 else jnp.arange(40)
        for s in range(0, 40, bs):
            carry, logs = one(carry, x[perm[s:s + bs]])
        want.append([float(v) for v in logs])
    copy = jax.tree.map(jnp.array, (state, tx.init(state)))  # the scanned run donates its carry
    got_carry, got_logs = _chunk_fn(step, 40, bs, shuffle)(copy, x, jnp.arange(3, dtype=jnp.int32))
    np.testing.assert_allclose(np.stack(got_logs, 1), np.asarray(want), rtol=1e-5, atol=1e-7)
    for a, b in zip(jax.tree.leaves(got_carry[0]), jax.tree.leaves(carry[0])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_minibatch_fit_keeps_the_best_chunk_after_donation():
    """`fit` with batches smaller than the catalogue: the kept parameters (a host copy, the device
    carry being donated to the next chunk) encode to `fit_codes`, whose rate is the history's best."""
    x = np.random.default_rng(6).normal(size=(40, 10)).astype(np.float32)
    cfg = attrs.evolve(TINY, batch_size=16, epochs=6, eval_every=2, kmeans_iters=10, warmup_steps=2)
    fitted = RqvaeQuantizer(cfg=cfg).fit(x, seed=0)
    assert [h["epoch"] for h in fitted.history] == [2, 4, 6]
    assert all(isinstance(v, np.ndarray) for v in jax.tree.leaves(fitted.state))
    np.testing.assert_array_equal(fitted.encode(x), fitted.fit_codes)
    best = min(h["collision_rate"] for h in fitted.history)
    assert 1 - len(np.unique(fitted.fit_codes, axis=0)) / 40 == pytest.approx(best)
