"""`rq_kmeans_plus`: residual encoder, zero-initialised last layer, warm-started codebooks, and its
loss equal to the formula computed by hand (numpy) on fixed weights."""

from __future__ import annotations

import attrs
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sid_quantizers.config import RqKmeansPlusConfig
from sid_quantizers.rqkmeans_plus import build, load_codebooks, warm_model
from sid_quantizers.rqvae import rqvae_loss
from sidcore.errors import DataError
from sidcore.testing.quantizers import planted_embeddings


def _set(param, value):
    param[...] = jnp.asarray(value, jnp.float32)


def test_loss_terms_equal_the_formula_on_fixed_weights():
    rng = np.random.default_rng(7)
    d, h, beta, w = 3, 2, 0.25, 0.7
    x = rng.normal(size=(5, d)).astype(np.float32)
    books = [rng.normal(size=(3, d)).astype(np.float32), 0.3 * rng.normal(size=(2, d)).astype(np.float32)]
    cfg = RqKmeansPlusConfig(codebook_sizes=[3, 2], layers=[h], beta=beta, quant_loss_weight=w)
    model = warm_model(d, cfg, books, key=jax.random.PRNGKey(0))
    # fixed, non-zero weights everywhere (the last encoder layer too, so MLP(x) matters)
    we1, be1, we2, be2 = (rng.normal(size=s).astype(np.float32) for s in [(d, h), (h,), (h, d), (d,)])
    wd1, bd1, wd2, bd2 = (rng.normal(size=s).astype(np.float32) for s in [(d, h), (h,), (h, d), (d,)])
    bd1 = np.abs(bd1) + 3.0  # the decoder's hidden units active, so the reconstruction reaches z
    enc, dec = model.encoder.layers, model.decoder.layers
    weights = [(we1, be1), (we2, be2), (wd1, bd1), (wd2, bd2)]
    for layer, (k, b) in zip([enc[0], enc[1], dec[0], dec[1]], weights):
        _set(layer.kernel, k)
        _set(layer.bias, b)
    total, (recon, quant) = rqvae_loss(model, jnp.asarray(x), beta=beta, quant_weight=w)

    # by hand: z = x + MLP(x); greedy residual codes; x_hat = decoder(sum of codewords)
    relu = lambda a: np.maximum(a, 0.0)  # noqa: E731
    z = x.astype(np.float64) + relu(x @ we1 + be1) @ we2 + be2
    r, zq, level_losses = z, 0.0, []
    for c in books:
        q = c[np.argmin(((r[:, None, :] - c[None]) ** 2).sum(-1), axis=1)].astype(np.float64)
        mse = np.mean((q - r) ** 2)
        level_losses.append(mse + beta * mse)  # codebook term + beta * commitment term (equal in value)
        zq, r = zq + q, r - q
    x_hat = relu(zq @ wd1 + bd1) @ wd2 + bd2
    want_recon = np.mean((x_hat - x) ** 2)
    want_quant = np.mean(level_losses)
    np.testing.assert_allclose(float(recon), want_recon, rtol=1e-5)
    np.testing.assert_allclose(float(quant), want_quant, rtol=1e-5)
    np.testing.assert_allclose(float(total), want_recon + w * want_quant, rtol=1e-5)

    # the gradients split like the formula: codebooks get only the codebook term, the decoder only the
    # reconstruction.
    def part(m, which):
        t, (rc, qu) = rqvae_loss(m, jnp.asarray(x), beta=beta, quant_weight=w)
        return {"recon": rc, "quant": qu}[which]

    from flax import nnx

    g_recon = nnx.grad(lambda m: part(m, "recon"))(model)
    g_quant = nnx.grad(lambda m: part(m, "quant"))(model)
    assert all(float(jnp.abs(g[...]).max()) == 0 for g in (g_quant.decoder.layers[0].kernel,
                                                           g_quant.decoder.layers[1].bias))
    # straight-through: the reconstruction reaches the encoder (through z), never the codewords
    assert float(jnp.abs(g_recon.codebooks[0][...]).max()) == 0
    assert float(jnp.abs(g_recon.encoder.layers[1].bias[...]).max()) > 0
    # d quant / d codebook_l row used by row set: 2 * (q - r) / (n d) / L, summed over its rows
    n = x.shape[0]
    r1 = z
    idx = np.argmin(((r1[:, None, :] - books[0][None]) ** 2).sum(-1), axis=1)
    want = np.zeros_like(books[0], np.float64)
    for i, j in enumerate(idx):
        want[j] += 2 * (books[0][j] - r1[i]) / (n * d) / len(books)
    np.testing.assert_allclose(np.asarray(g_quant.codebooks[0][...]), want, rtol=1e-4, atol=1e-6)


def test_warm_model_starts_at_identity_encoder_and_given_codebooks():
    x, _ = planted_embeddings(64, 6, seed=1)
    books = [x[:4], x[4:8] * 0.1]
    cfg = RqKmeansPlusConfig(codebook_sizes=[4, 4], layers=[16, 8])
    model = warm_model(6, cfg, books, key=jax.random.PRNGKey(3))
    np.testing.assert_array_equal(np.asarray(model.embed(jnp.asarray(x))), x)  # z = x + 0
    assert float(jnp.abs(model.encoder.layers[0].kernel[...]).max()) > 0  # only the last layer is zero
    np.testing.assert_array_equal(np.asarray(model.codebooks[1][...]), books[1])
    assert model.decoder.layers[0].kernel.shape == (6, 8) and model.decoder.layers[-1].kernel.shape == (16, 6)


@pytest.mark.slow
def test_fit_from_an_npz_and_its_errors(tmp_path):
    x, _ = planted_embeddings(120, 8, groups=6, seed=2)
    from sid_quantizers.balanced import fit_balanced

    bal = fit_balanced(x, [6, 4], seed=0, n_init=1, max_iter=10)
    np.savez(tmp_path / "cb.npz", **{f"codebook_{i}": c for i, c in enumerate(bal.codebooks)})
    cfg = RqKmeansPlusConfig(codebook_sizes=[6, 4], layers=[8], epochs=4, eval_every=2, batch_size=64,
                             init_codebooks=str(tmp_path / "cb.npz"))
    fitted = build(cfg).fit(x, seed=0)
    assert fitted.fit_codes.shape == (120, 2) and fitted.residual
    np.testing.assert_array_equal(fitted.encode(x), fitted.fit_codes)
    assert len(fitted.history) == 2
    # the saved artefact restores the residual model (z = x + MLP(x)) and its codes
    from sid_quantizers.artefact import load_quantizer, save_quantizer

    save_quantizer(tmp_path / "q", fitted, quantizer="rq_kmeans_plus", options=attrs.asdict(cfg), dim=8)
    back = load_quantizer(tmp_path / "q")
    assert back.meta["model"] == {"in_dim": 8, "residual": True} and back.fitted.residual
    np.testing.assert_array_equal(back.fitted.encode(x), fitted.fit_codes)
    codes = fitted.fit_codes
    np.testing.assert_allclose(back.fitted.decode(codes), fitted.decode(codes), rtol=1e-6)
    with pytest.raises(DataError, match=r"cb.npz \[codebook_0\]: shape \(6, 8\), expected \(5, 8\)"):
        load_codebooks(tmp_path / "cb.npz", [5, 4], 8)
    with pytest.raises(DataError, match="no codebook_2"):
        load_codebooks(tmp_path / "cb.npz", [6, 4, 4], 8)
