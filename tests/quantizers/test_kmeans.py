"""Residual k-means (`rq_kmeans`) against scikit-learn, and its invariants."""

from __future__ import annotations

import numpy as np
import pytest

from sid_quantizers.kmeans import fit_kmeans, fit_residual_kmeans, kmeans_plus_plus
from sidcore.testing.quantizers import planted_embeddings

sklearn = pytest.importorskip("sklearn.cluster")


def _data(n=2000, dim=64, groups=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(groups, dim)) * 3
    return centers[rng.integers(groups, size=n)] + rng.normal(size=(n, dim))


def test_lloyd_reproduces_sklearn_per_level_with_fixed_init():
    x = _data()  # float64 for the reference
    sizes = [16, 8, 8]
    r, inits, ref = x.copy(), [], []
    for level, k in enumerate(sizes):
        c0 = r[np.random.default_rng(level).choice(len(r), k, replace=False)]
        km = sklearn.KMeans(n_clusters=k, init=c0, n_init=1, algorithm="lloyd").fit(r)
        inits.append(c0.astype(np.float32))
        ref.append((km.labels_, km.cluster_centers_))
        r = r - km.cluster_centers_[km.labels_]
    q = fit_residual_kmeans(x, sizes, seed=0, max_iter=300, tol=1e-4, init=inits)
    scale = float(np.abs(x).max())
    for level, (labels, centers) in enumerate(ref):
        np.testing.assert_array_equal(q.fit_codes[:, level], labels, err_msg=f"level {level} codes")
        np.testing.assert_allclose(q.codebooks[level], centers, atol=1e-5 * scale, err_msg=f"level {level}")


def test_decode_is_sum_of_chosen_centroids_and_error_falls_per_level():
    x, _ = planted_embeddings(600, 24, groups=10, seed=1)
    q = fit_residual_kmeans(x, [8, 6, 5, 4], seed=3)
    codes = q.encode(x)
    np.testing.assert_array_equal(codes, q.fit_codes)
    manual = sum(q.codebooks[lvl][codes[:, lvl]] for lvl in range(4))
    np.testing.assert_allclose(q.decode(codes), manual, rtol=0, atol=1e-6)
    errors = [((x - (x.mean(0) if lvl == 0 else
                     sum(q.codebooks[i][codes[:, i]] for i in range(lvl)))) ** 2).sum(1).mean()
              for lvl in range(5)]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors


def test_prefix_of_a_deeper_fit_is_the_shallower_fit():
    x, _ = planted_embeddings(300, 8, seed=2)
    deep = fit_residual_kmeans(x, [6, 4, 3], seed=5)
    shallow = fit_residual_kmeans(x, [6, 4], seed=5)
    np.testing.assert_array_equal(deep.fit_codes[:, :2], shallow.fit_codes)


def test_kmeans_plus_plus_picks_distinct_rows_deterministically():
    import jax

    x, _ = planted_embeddings(200, 8, groups=5, seed=0)
    c1 = np.asarray(kmeans_plus_plus(jax.random.PRNGKey(0), x, 5))
    c2 = np.asarray(kmeans_plus_plus(jax.random.PRNGKey(0), x, 5))
    np.testing.assert_array_equal(c1, c2)
    rows = {tuple(r) for r in x.tolist()}
    assert all(tuple(r) in rows for r in c1.tolist()) and len({tuple(r) for r in c1.tolist()}) == 5
    # one centre per planted blob (k-means++ spreads them out)
    blob = [int(np.argmin(((x - c) ** 2).sum(1))) % 5 for c in c1]
    assert sorted(blob) == list(range(5))


def test_empty_clusters_are_moved_onto_far_rows():
    import jax.numpy as jnp

    x, _ = planted_embeddings(120, 4, groups=4, seed=0)
    init = np.repeat(x[:1], 4, axis=0)  # all four centres on one row: three start empty
    c, lab, _ = fit_kmeans(None, jnp.asarray(x), 4, max_iter=50, tol=0.0, init=init)
    assert len(np.unique(np.asarray(lab))) == 4
    assert len({tuple(r) for r in np.asarray(c).round(5).tolist()}) == 4


def test_bad_sizes_are_config_errors():
    from sidcore.errors import ConfigError

    x, _ = planted_embeddings(20, 4)
    with pytest.raises(ConfigError, match="exceeds the number of items"):
        fit_residual_kmeans(x, [32], seed=0)
    with pytest.raises(ConfigError, match="positive integers"):
        fit_residual_kmeans(x, [], seed=0)
