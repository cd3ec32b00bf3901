"""Conformance suite for quantizer components (`sidcore.interfaces.Quantizer`).

`check_quantizer(build, cfg)` fits the quantizer on small planted-cluster embeddings and asserts
the contract: ``codebook_sizes`` matches, ``fit_codes`` / ``encode`` are ``[N, L]`` int32 within
each level's range, ``encode`` is deterministic, ``decode`` gives finite ``[N, D]`` float32,
``distances`` is ``[N, K_l]`` non-negative and its argmin at the last level agrees with ``encode``
on the greedy prefix, the same seed refits to the same codes, and the reconstruction beats the
all-mean baseline. Inputs are never modified. Returns the fitted quantizer for further checks.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["check_quantizer", "planted_embeddings"]


def planted_embeddings(n: int = 240, dim: int = 16, *, groups: int = 6, seed: int = 0,
                       spread: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """``(x [n, dim] float32, labels [n])``: ``groups`` well-separated Gaussian blobs."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(groups, dim)) * 3.0
    labels = np.arange(n) % groups
    x = centers[labels] + spread * rng.normal(size=(n, dim))
    return x.astype(np.float32), labels


def check_quantizer(build: Callable[[Any], Any], cfg: Any, *, sizes: tuple[int, ...], n: int = 240,
                    dim: int = 16, seed: int = 0, refit: bool = True) -> Any:
    """Run the suite (raises ``AssertionError`` on the first violation).

    Args:
        build: the factory ``build(cfg) -> Quantizer``.
        cfg: its config, with codebook sizes ``sizes``.
        refit: also check that a second fit with the same seed gives the same codes.
    """
    x, _ = planted_embeddings(n, dim, seed=seed)
    before = x.copy()
    fitted = build(cfg).fit(x, seed=seed)
    assert np.array_equal(x, before), "fit must not modify its input"
    assert tuple(fitted.codebook_sizes) == tuple(sizes), (fitted.codebook_sizes, sizes)
    levels = len(sizes)
    for name, codes in (("fit_codes", fitted.fit_codes), ("encode", fitted.encode(x))):
        codes = np.asarray(codes)
        assert codes.shape == (n, levels) and codes.dtype == np.int32, (name, codes.shape, codes.dtype)
        assert (codes >= 0).all() and (codes < np.asarray(sizes)).all(), f"{name}: code out of range"
    codes = np.asarray(fitted.encode(x))
    assert np.array_equal(codes, fitted.encode(x)), "encode must be deterministic"
    rec = np.asarray(fitted.decode(codes))
    assert rec.shape == x.shape and rec.dtype == np.float32 and np.isfinite(rec).all()
    err = ((rec - x) ** 2).sum(1).mean()
    base = ((x - x.mean(0)) ** 2).sum(1).mean()
    assert err < base, f"reconstruction error {err} is not below the mean baseline {base}"
    for level in range(levels):
        d = np.asarray(fitted.distances(x, codes, level))
        assert d.shape == (n, sizes[level]) and (d >= 0).all() and np.isfinite(d).all()
        agree = (d.argmin(1) == codes[:, level]).mean()
        assert agree > 0.99, f"level {level}: distances' argmin agrees with encode on {agree:.1%} of rows"
    if refit:
        again = build(cfg).fit(x, seed=seed)
        assert np.array_equal(np.asarray(again.fit_codes), np.asarray(fitted.fit_codes)), (
            "the same seed must give the same codes")
    return fitted
