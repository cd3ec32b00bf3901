"""`rq_kmeans_balanced` vs upstream's constrained RQ-Kmeans (`KMeansConstrained`), same matrix.

Upstream (``rq/rqkmeans_constrained.py``): per level ``KMeansConstrained(n_clusters=K,
size_min=max(1, n//K - 1), size_max=n//K + 1, max_iter=100, tol=1e-4, n_init=3,
random_state=RandomState(seed + l).randint(0, 2**31 - 1))`` on the residuals. This script runs that
(the PyPI package ``k-means-constrained``, a test-only reference, must be importable) and sid's
`fit_balanced` on the same planted-cluster matrix (`bench/quantize_vs_ref.py`'s ``synthetic``: 64
Gaussian centres, noise 0.5), and prints the residual MSE ``mean(R_l ** 2)`` after each level, the
cluster-size range and the seconds. The reference run is cached in ``--cache`` (it takes minutes).

Usage::

    PYTHONPATH=.:plugins:/path/to/k-means-constrained python bench/balanced_vs_constrained.py \\
        --shape 3686x256 --levels 3 --k 256 --cache /tmp/kmc_ref.npz
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def synthetic(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(64, d)).astype(np.float32)
    return centers[rng.integers(64, size=n)] + 0.5 * rng.normal(size=(n, d)).astype(np.float32)


def level_mse(x: np.ndarray, books, codes: np.ndarray) -> list[float]:
    r, out = x.astype(np.float64), []
    for level, c in enumerate(books):
        r = r - np.asarray(c, np.float64)[codes[:, level]]
        out.append(float(np.mean(r ** 2)))
    return out


def upstream(x: np.ndarray, k: int, levels: int, seed: int, max_iter: int, n_jobs: int):
    from k_means_constrained import KMeansConstrained

    r = x.astype(np.float32).copy()
    books, codes = [], []
    n = x.shape[0]
    for level in range(levels):
        seed_l = int(np.random.RandomState(seed + level).randint(0, 2**31 - 1))
        km = KMeansConstrained(n_clusters=k, size_min=max(1, n // k - 1), size_max=n // k + 1,
                               max_iter=max_iter, tol=1e-4, random_state=seed_l, n_init=3, n_jobs=n_jobs)
        lab = km.fit_predict(r)
        c = km.cluster_centers_
        books.append(np.asarray(c, np.float32))
        codes.append(lab)
        r -= c[lab]
    return books, np.stack(codes, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="3686x256")
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42, help="upstream's rqkmeans_constrained.sh seed")
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--cache", default="", help=".npz of the reference run (written if absent)")
    ap.add_argument("--sid-options", default="{}", help="JSON of extra `fit_balanced` keyword arguments")
    ap.add_argument("--skip-sid", action="store_true")
    args = ap.parse_args()
    n, d = (int(v) for v in args.shape.split("x"))
    x = synthetic(n, d)
    sizes = [args.k] * args.levels
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.is_file():
        z = np.load(cache)
        books = [z[f"codebook_{i}"] for i in range(args.levels)]
        codes, ref_s = z["codes"], float(z["seconds"])
    else:
        t = time.perf_counter()
        books, codes = upstream(x, args.k, args.levels, args.seed, args.max_iter, args.n_jobs)
        ref_s = time.perf_counter() - t
        if cache is not None:
            np.savez(cache, codes=codes, seconds=ref_s, **{f"codebook_{i}": b for i, b in enumerate(books)})
    ref = level_mse(x, books, codes)
    print(f"input {n}x{d}, {args.levels} x {args.k}; per-level residual MSE mean(R_l^2)")
    ref_counts = [np.bincount(codes[:, lv]) for lv in range(args.levels)]
    print(f"upstream KMeansConstrained  {['%.5f' % v for v in ref]}  sizes "
          f"{[(int(c.min()), int(c.max())) for c in ref_counts]}"
          f"  {ref_s:.1f} s")
    if args.skip_sid:
        return
    from sid_quantizers.balanced import fit_balanced

    opts = json.loads(args.sid_options)
    t = time.perf_counter()
    q = fit_balanced(x, sizes, seed=args.seed, **opts)
    sid_s = time.perf_counter() - t
    mine = level_mse(x, q.codebooks, q.fit_codes)
    rel = [f"{100 * (a / b - 1):+.1f} %" for a, b in zip(mine, ref)]
    counts = [np.bincount(q.fit_codes[:, lv]) for lv in range(args.levels)]
    print(f"sid fit_balanced {opts}  {['%.5f' % v for v in mine]}  sizes "
          f"{[(int(c.min()), int(c.max())) for c in counts]}"
          f"  {sid_s:.1f} s  vs upstream {rel}")


if __name__ == "__main__":
    main()
