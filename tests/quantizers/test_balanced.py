"""Size-constrained residual k-means (`rq_kmeans_balanced`)."""

from __future__ import annotations

import numpy as np
import pytest

from sid_quantizers.balanced import capacities, capacity_assign, fit_balanced
from sidcore.testing.quantizers import planted_embeddings


@pytest.mark.parametrize("n, k", [(300, 7), (256, 16), (101, 10)])
def test_capacity_assign_meets_every_capacity(n, k):
    rng = np.random.default_rng(n)
    cost = rng.random((n, k)) + (np.arange(k) == 0) * -1.0  # everyone prefers cluster 0
    caps = capacities(n, k)
    lab = capacity_assign(cost, caps)
    np.testing.assert_array_equal(np.bincount(lab, minlength=k), caps)


def test_capacity_assign_is_the_argmin_when_it_fits():
    cost = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    np.testing.assert_array_equal(capacity_assign(cost, np.array([2, 2])), [0, 1, 0, 1])


def test_balanced_levels_keep_sizes_within_upstream_bounds():
    x, _ = planted_embeddings(500, 12, groups=3, seed=4)  # unbalanced blobs vs 8 codes
    sizes = [8, 6, 5]
    q = fit_balanced(x, sizes, seed=0, max_iter=10, kmeans_iter=20)
    for level, k in enumerate(sizes):
        counts = np.bincount(q.fit_codes[:, level], minlength=k)
        assert counts.min() >= 500 // k - 1 and counts.max() <= 500 // k + 1, (level, counts)
    # the codebooks are the means of their (balanced) clusters
    r = x - q.codebooks[0][q.fit_codes[:, 0]]
    for c in range(sizes[1]):
        np.testing.assert_allclose(q.codebooks[1][c], r[q.fit_codes[:, 1] == c].mean(0), atol=1e-4)
