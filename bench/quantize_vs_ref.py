"""SID construction speed: sid's JAX quantizers vs the reference implementations, same inputs.

* **RQ-VAE**: training steps/s on one batch of ``min(N, 20480)`` rows of `sid_quantizers.rqvae` (jitted step, ``lax.scan`` over
  steps, as ``rqvae`` runs when one batch holds the catalogue) vs a plain PyTorch loop of the same
  architecture, loss, AdamW and clipping (upstream ``rq/trainer.py`` without its logging/eval).
* **Residual k-means**: 3 levels x 256, a fixed number of Lloyd iterations (tol 0) from k-means++,
  `sid_quantizers.kmeans.fit_residual_kmeans` vs faiss ``ResidualQuantizer(d, 3, 8)`` with
  ``max_beam_size=1`` (greedy, upstream ``rqkmeans_faiss.py``; no training subsample) and sklearn
  ``KMeans(algorithm="lloyd", n_init=1)`` per level. Reconstruction MSE is printed to show the
  three solve the same problem.

Inputs are synthetic Gaussian-mixture embeddings (``--shapes 3686x2560,100000x768``).

Usage::

    python bench/quantize_vs_ref.py --shapes 3686x2560 --rqvae-steps 3 --kmeans-iter 20
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def synthetic(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(64, d)).astype(np.float32)
    return centers[rng.integers(64, size=n)] + 0.5 * rng.normal(size=(n, d)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ RQ-VAE


def bench_rqvae_jax(x: np.ndarray, steps: int) -> tuple[float, float]:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from sid_quantizers.config import RqvaeConfig
    from sid_quantizers.rqvae import RQVAE, _step_fn, make_optimizer

    cfg = RqvaeConfig()
    model = RQVAE(x.shape[1], cfg, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    tx = make_optimizer(cfg)
    xj = jnp.asarray(x)
    step = _step_fn(graphdef, tx, cfg)
    run = jax.jit(lambda c, xs, m: jax.lax.scan(lambda cc, _: step(cc, xs), c, None, length=m),
                  static_argnums=2)
    carry = (state, tx.init(state))
    t0 = time.perf_counter()
    carry, logs = run(carry, xj, steps)
    jax.block_until_ready(logs)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    carry, logs = run(carry, xj, steps)
    jax.block_until_ready(logs)
    return steps / (time.perf_counter() - t0), first


def bench_rqvae_torch(x: np.ndarray, steps: int) -> float:
    import torch
    from torch import nn

    torch.manual_seed(0)
    dims = [x.shape[1], 2048, 1024, 512, 256, 128, 64, 32]

    def mlp(ds):
        layers = []
        for i, (a, b) in enumerate(zip(ds[:-1], ds[1:])):
            lin = nn.Linear(a, b)
            nn.init.xavier_normal_(lin.weight)
            nn.init.zeros_(lin.bias)
            layers += [lin] + ([nn.ReLU()] if i + 2 < len(ds) else [])
        return nn.Sequential(*layers)

    enc, dec = mlp(dims), mlp(dims[::-1])
    books = nn.ParameterList([nn.Parameter(torch.rand(256, 32) * 2 / 256 - 1 / 256) for _ in range(3)])
    params = [*enc.parameters(), *dec.parameters(), *books]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    xt = torch.from_numpy(x)

    def one():
        z = enc(xt)
        r, total, losses = z, torch.zeros_like(z), []
        for c in books:
            idx = torch.cdist(r, c).argmin(1)
            q = c[idx]
            losses.append(((q - r.detach()) ** 2).mean() + 0.25 * ((q.detach() - r) ** 2).mean())
            out = r + (q - r).detach()
            total, r = total + out, r - out
        loss = ((dec(total) - xt) ** 2).mean() + torch.stack(losses).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    one()  # warm up
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    return steps / (time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------ k-means


def _mse(x, rec):
    return float(((x - rec) ** 2).sum(1).mean())


def bench_kmeans_jax(x: np.ndarray, iters: int) -> tuple[float, float, float]:
    from sid_quantizers.kmeans import fit_residual_kmeans

    t0 = time.perf_counter()
    fit_residual_kmeans(x, [256] * 3, seed=0, max_iter=iters, tol=0.0)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    q = fit_residual_kmeans(x, [256] * 3, seed=1, max_iter=iters, tol=0.0)
    return time.perf_counter() - t0, first, _mse(x, q.decode(q.fit_codes))


def bench_kmeans_faiss(x: np.ndarray, iters: int) -> tuple[float, float] | None:
    try:
        import faiss
    except ImportError:
        return None
    rq = faiss.ResidualQuantizer(x.shape[1], 3, 8)
    rq.max_beam_size = 1
    rq.train_type = 0  # plain k-means per level (the default also runs progressive-dim k-means)
    rq.cp.niter = iters
    rq.cp.max_points_per_centroid = 1 << 30  # train on every row, like the JAX run
    t0 = time.perf_counter()
    rq.train(x)
    elapsed = time.perf_counter() - t0
    codes = rq.compute_codes(x)
    return elapsed, _mse(x, rq.decode(codes))


def bench_kmeans_sklearn(x: np.ndarray, iters: int) -> tuple[float, float]:
    from sklearn.cluster import KMeans

    t0 = time.perf_counter()
    r = x.copy()
    for level in range(3):
        km = KMeans(256, init="k-means++", n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd",
                    random_state=level).fit(r)
        r = r - km.cluster_centers_[km.labels_]
    return time.perf_counter() - t0, float((r ** 2).sum(1).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="3686x2560,100000x768")
    ap.add_argument("--rqvae-steps", type=int, default=3)
    ap.add_argument("--kmeans-iter", type=int, default=20)
    ap.add_argument("--skip", default="", help="comma list of: rqvae, torch, jax_kmeans, faiss, sklearn")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    import os

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    print("| shape | what | sid (JAX) | reference | ratio |")
    print("|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        n, d = (int(v) for v in shape.split("x"))
        x = synthetic(n, d)
        if "rqvae" not in skip:
            xb = x[:20480]  # upstream batch size: one step = one batch of at most 20,480 items
            sps, first = bench_rqvae_jax(xb, args.rqvae_steps)
            ref = bench_rqvae_torch(xb, args.rqvae_steps) if "torch" not in skip else float("nan")
            print(f"| {shape} | RQ-VAE full-batch steps/s (first call {first:.1f} s incl. compile) | "
                  f"{sps:.3f} | torch {ref:.3f} | {sps / ref:.2f}x |", flush=True)
        if "jax_kmeans" not in skip:
            secs, first, mse = bench_kmeans_jax(x, args.kmeans_iter)
            line = f"| {shape} | residual k-means 3x256, {args.kmeans_iter} it, s (MSE) | {secs:.1f} ({mse:.2f})"
            if "faiss" not in skip and (res := bench_kmeans_faiss(x, args.kmeans_iter)) is not None:
                print(f"{line} [first {first:.1f}] | faiss {res[0]:.1f} ({res[1]:.2f}) | {secs / res[0]:.2f}x |",
                      flush=True)
            if "sklearn" not in skip:
                sk = bench_kmeans_sklearn(x, args.kmeans_iter)
                print(f"{line} | sklearn {sk[0]:.1f} ({sk[1]:.2f}) | {secs / sk[0]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
