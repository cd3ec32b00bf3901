"""Factories of the k-means quantizers (``rq_kmeans``, ``rq_kmeans_balanced``)."""

from __future__ import annotations

import attrs
import numpy as np

from sid_quantizers.config import BalancedConfig, RqKmeansConfig
from sid_quantizers.kmeans import ResidualKMeans

__all__ = ["BalancedQuantizer", "RqKmeansQuantizer", "build_balanced", "build_rq_kmeans"]


@attrs.frozen(kw_only=True)
class RqKmeansQuantizer:
    """`sidcore.interfaces.Quantizer`: greedy residual k-means."""

    cfg: RqKmeansConfig

    def fit(self, embeddings: np.ndarray, *, seed: int) -> ResidualKMeans:
        from sid_quantizers.kmeans import fit_residual_kmeans

        c = self.cfg
        return fit_residual_kmeans(embeddings, c.codebook_sizes, seed=seed, max_iter=c.max_iter, tol=c.tol,
                                   n_init=c.n_init)


@attrs.frozen(kw_only=True)
class BalancedQuantizer:
    """`sidcore.interfaces.Quantizer`: size-constrained residual k-means."""

    cfg: BalancedConfig

    def fit(self, embeddings: np.ndarray, *, seed: int) -> ResidualKMeans:
        from sid_quantizers.balanced import fit_balanced

        c = self.cfg
        return fit_balanced(embeddings, c.codebook_sizes, seed=seed, max_iter=c.max_iter, tol=c.tol,
                            n_init=c.n_init, size_slack=c.size_slack, kmeans_iter=c.kmeans_iter,
                            sinkhorn_iterations=c.sinkhorn_iterations, tau=c.tau)


def build_rq_kmeans(cfg: RqKmeansConfig) -> RqKmeansQuantizer:
    """Factory registered as quantizer ``rq_kmeans``."""
    return RqKmeansQuantizer(cfg=cfg)


def build_balanced(cfg: BalancedConfig) -> BalancedQuantizer:
    """Factory registered as quantizer ``rq_kmeans_balanced``."""
    return BalancedQuantizer(cfg=cfg)
