"""SID construction speed: sid's JAX quantizers vs the reference implementations, same inputs.

* **RQ-VAE**: training steps/s of `sid_quantizers.rqvae` (its fit path: epochs and their batches in
  one jitted ``lax.scan``) vs a plain PyTorch loop of the same architecture, loss, AdamW, warmup
  and clipping (upstream ``rq/trainer.py`` without its logging/eval), from the same initial
  weights, on the same rows, batch size (``--rqvae-batch``; upstream 20,480, i.e. one batch = the
  catalogue) and number of steps; the two are timed alternately for ``--rounds`` rounds, best and
  median reported. ``--profile`` adds the phases of one step and the largest GEMM, both sides.
* **Residual k-means**: 3 levels x 256, a fixed number of Lloyd iterations (tol 0) from k-means++,
  `sid_quantizers.kmeans.fit_residual_kmeans` vs faiss ``ResidualQuantizer(d, 3, 8)`` with
  ``max_beam_size=1`` (greedy, upstream ``rqkmeans_faiss.py``; no training subsample) and sklearn
  ``KMeans(algorithm="lloyd", n_init=1)`` per level. Reconstruction MSE is printed to show the
  three solve the same problem. The three alternate (sid, faiss, sklearn) for ``--rounds`` rounds,
  after one untimed sid call that compiles; min and median seconds are reported.

Inputs are synthetic Gaussian-mixture embeddings (``--shapes 3686x2560,100000x768``).

Measurement (bench/method.py): every comparison runs its sides alternately, ``A B A B ...``, for
``--rounds`` rounds (at least 3; ``--repeats``, the older name, is the same flag); the load gate runs
once before the first shape, and the other processes' CPU is recorded over the whole run. ``--json``
writes every comparison's min/median summary and the method's record (loads, others' CPU, idle).

Usage::

    python bench/quantize_vs_ref.py --shapes 3686x2560 --rqvae-batch 20480,1024 --rqvae-epochs 2 \\
        --repeats 3 --loop-vs-scan --profile --skip jax_kmeans
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


def jax_rqvae(d: int, n: int, batch: int, seed: int = 0):
    """sid's training path (`sid_quantizers.rqvae._chunk_fn`, as `RqvaeQuantizer.fit` runs it) with
    upstream's default config: ``(run(carry, x, epochs) -> (carry, logs), step, carry, numpy params)``."""
    import jax
    from flax import nnx

    from sid_quantizers.config import RqvaeConfig
    from sid_quantizers.rqvae import RQVAE, _chunk_fn, _step_fn, make_optimizer

    cfg = RqvaeConfig()
    graphdef, state = nnx.split(RQVAE(d, cfg, rngs=nnx.Rngs(seed)))
    tx = make_optimizer(cfg)
    step = _step_fn(graphdef, tx, cfg)
    run = _chunk_fn(step, n, min(batch, n), jax.random.PRNGKey(seed))
    params = jax.tree.map(np.array, state)
    return run, step, (state, tx.init(state)), params


def torch_params(state) -> dict[str, list[np.ndarray]]:
    """The nnx state of an `RQVAE` as torch-layout arrays (Linear weights ``[out, in]``)."""
    def mlp(part):
        return [(np.asarray(lay["kernel"][...]).T.copy(), np.asarray(lay["bias"][...]).copy())
                for _, lay in sorted(state[part]["layers"].items())]
    books = [np.asarray(b[...]).copy() for _, b in sorted(state["codebooks"].items())]
    return {"encoder": mlp("encoder"), "decoder": mlp("decoder"), "codebooks": books}


def torch_rqvae(params, *, lr=1e-3, warmup=50, beta=0.25, quant_weight=1.0, clip=1.0):
    """A plain PyTorch transcription of upstream's RQ-VAE step (``rq/trainer.py`` without its
    logging/eval): encoder, residual VQ on ``|r|^2 + |c|^2 - 2 r c^T``, straight-through, MSE + quant
    loss, backward, global-norm clip, AdamW with constant-after-linear-warmup lr.
    Returns ``(step(batch) -> (loss, recon, quant) tensors, losses(batch) (no update), modules)``."""
    import torch
    from torch import nn

    def mlp(layers):
        mods = []
        for i, (w, b) in enumerate(layers):
            lin = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w))
                lin.bias.copy_(torch.from_numpy(b))
            mods += [lin] + ([nn.ReLU()] if i + 1 < len(layers) else [])
        return nn.Sequential(*mods)

    enc, dec = mlp(params["encoder"]), mlp(params["decoder"])
    books = nn.ParameterList([nn.Parameter(torch.from_numpy(c.copy())) for c in params["codebooks"]])
    allp = [*enc.parameters(), *dec.parameters(), *books]
    opt = torch.optim.AdamW(allp, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, k / warmup) if warmup else 1.0)

    def losses(xb):
        z = enc(xb)
        r, total, levels = z, torch.zeros_like(z), []
        for c in books:
            d = (r * r).sum(1, keepdim=True) + (c * c).sum(1)[None] - 2.0 * r @ c.T
            q = c[d.argmin(1)]
            levels.append(((q - r.detach()) ** 2).mean() + beta * ((q.detach() - r) ** 2).mean())
            out = r + (q - r).detach()
            total, r = total + out, r - out
        recon = ((dec(total) - xb) ** 2).mean()
        quant = torch.stack(levels).mean()
        return recon + quant_weight * quant, recon, quant

    def step(xb):
        loss, recon, quant = losses(xb)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(allp, clip)
        opt.step()
        sched.step()
        return loss.detach(), recon.detach(), quant.detach()

    return step, losses, (enc, dec, books)


def torch_epochs(step, xt, batch: int, epochs: int, seed: int = 0) -> None:
    """Upstream's epoch loop: shuffled batches of ``batch`` rows, last partial batch kept."""
    import torch

    n = xt.shape[0]
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen) if batch < n else None
        for s in range(0, n, batch):
            step(xt if perm is None else xt[perm[s:s + batch]])


def bench_rqvae(x: np.ndarray, batch: int, epochs: int, method, torch_too: bool) -> dict:
    """Seconds per run of both sides, alternating for ``method.rounds`` rounds (`Method.alternate`),
    same initial weights, data, batch size and number of steps; compile and a warm-up epoch excluded."""
    import jax
    import jax.numpy as jnp
    import torch

    n = x.shape[0]
    steps = epochs * -(-n // min(batch, n))
    run, step, carry, params = jax_rqvae(x.shape[1], n, batch)
    xj, ep = jnp.asarray(x), jnp.arange(epochs, dtype=jnp.int32)
    t0 = time.perf_counter()
    carry, logs = run(carry, xj, ep)
    jax.block_until_ready(logs)
    first = time.perf_counter() - t0
    tstep, _, _ = torch_rqvae(torch_params(params))
    xt = torch.from_numpy(x)
    if torch_too:
        torch_epochs(tstep, xt, batch, 1)  # warm-up
    state = {"carry": carry}

    def sid_side() -> None:
        state["carry"], logs = run(state["carry"], xj, ep)
        jax.block_until_ready(logs)

    sides = {"sid": sid_side}
    if torch_too:
        sides["torch"] = lambda: torch_epochs(tstep, xt, batch, epochs)
    times = method.alternate(sides)
    cost = jax.jit(step).lower(state["carry"], xj[:min(batch, n)]).compile().cost_analysis()  # one full batch
    flops = (cost[0] if isinstance(cost, list) else cost)["flops"]
    return {"times": times, "first": first, "flops": flops, "steps": steps}


def loop_vs_scan(x: np.ndarray, batch: int, epochs: int, method) -> dict[str, list[float]]:
    """Steps/s of sid's step driven per batch from Python (host-side permutation and gather, one
    dispatch per batch: ``rqvae``'s mini-batch path before the epoch scan) vs the scanned chunk."""
    import jax
    import jax.numpy as jnp

    n = x.shape[0]
    run, step, carry, _ = jax_rqvae(x.shape[1], n, batch)
    one, key, xj = jax.jit(step), jax.random.PRNGKey(0), jnp.asarray(x)

    def loop(carry):
        for e in range(epochs):
            perm = jax.random.permutation(jax.random.fold_in(key, e), n)
            for s in range(0, n, batch):
                carry, logs = one(carry, xj[perm[s:s + batch]])
        return carry, logs

    def scanned(carry):
        return run(carry, xj, jnp.arange(epochs, dtype=jnp.int32))

    state = {"carry": carry}

    def side(fn):
        def go() -> None:
            state["carry"], logs = fn(state["carry"])
            jax.block_until_ready(logs)
        return go

    sides = {"loop": side(loop), "scan": side(scanned)}
    for go in sides.values():  # compiles, untimed
        go()
    return method.alternate(sides)


def profile_rqvae(x: np.ndarray, method) -> dict[str, dict]:
    """Best-of-``method.rounds`` ms of one full-batch step's phases on both sides (the two sides of a
    row alternate, `Method.alternate`, so that both see the same load), and the largest GEMM
    (``[N, 2560] x [2560, 2048]``) in the three layouts a training step uses."""
    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    from sid_quantizers.config import RqvaeConfig
    from sid_quantizers.rqvae import RQVAE, _step_fn, make_optimizer, rqvae_loss

    from method import summarize  # bench/method.py (main put bench/ on the path)

    summaries: dict[str, dict] = {}

    def pair(jf, tf, name):
        jax.block_until_ready(jf())
        tf()
        print(f"profile: {name}", flush=True)
        def sid_side() -> None:  # a side's return value is its sample when not None: return nothing
            jax.block_until_ready(jf())

        def torch_side() -> None:
            tf()

        times = method.alternate({"sid": sid_side, "torch": torch_side})
        summaries[name] = summarize(times, reference="torch", subject="sid")
        return 1e3 * min(times["sid"]), 1e3 * min(times["torch"])

    cfg = RqvaeConfig()
    graphdef, state = nnx.split(RQVAE(x.shape[1], cfg, rngs=nnx.Rngs(0)))
    tx = make_optimizer(cfg)
    opt = tx.init(state)
    xj, xt = jnp.asarray(x), torch.from_numpy(x)

    def loss(s, xb):
        return rqvae_loss(nnx.merge(graphdef, s), xb, beta=cfg.beta, quant_weight=cfg.quant_loss_weight)[0]

    enc = jax.jit(lambda s, xb: nnx.merge(graphdef, s).encoder(xb))
    fwd, vg, one = jax.jit(loss), jax.jit(jax.value_and_grad(loss)), jax.jit(_step_fn(graphdef, tx, cfg))
    tstep, tloss, (tenc, _, _) = torch_rqvae(torch_params(jax.tree.map(np.array, state)))
    rows = {"encoder forward": pair(lambda: enc(state, xj), lambda: tenc(xt), "encoder forward"),
            "loss forward": pair(lambda: fwd(state, xj), lambda: tloss(xt), "loss forward"),
            "loss + gradients": pair(lambda: vg(state, xj), lambda: tloss(xt)[0].backward(), "loss + gradients"),
            "full step (+ clip, AdamW)": pair(lambda: one((state, opt), xj), lambda: tstep(xt),
                                              "full step (+ clip, AdamW)")}
    n = x.shape[0]
    rng = np.random.default_rng(0)
    a, w, g = (rng.normal(size=s).astype(np.float32) for s in ((n, 2560), (2560, 2048), (n, 2048)))
    aj, wj, gj = jnp.asarray(a), jnp.asarray(w), jnp.asarray(g)
    at, wt, gt = torch.from_numpy(a), torch.from_numpy(w), torch.from_numpy(g)
    gemm = 2 * n * 2560 * 2048 / 1e6  # MFLOP
    for name, jf, jargs, tf in [
            ("GEMM x W (forward)", lambda p, q: p @ q, (aj, wj), lambda: at @ wt),
            ("GEMM x^T g (weight grad)", lambda p, q: p.T @ q, (aj, gj), lambda: at.T @ gt),
            ("GEMM g W^T (input grad)", lambda p, q: p @ q.T, (gj, wj), lambda: gt @ wt.T)]:
        f = jax.jit(jf)
        tj, tt = pair(lambda: f(*jargs), tf, name)
        rows[f"{name}, GFLOP/s"] = (gemm / tj, gemm / tt)
    print("| phase (full batch) | sid (JAX) ms | torch ms | ratio |\n|---|---|---|---|")
    for name, (vj, vt) in rows.items():
        ratio = vj / vt if "GFLOP" in name else vt / vj
        print(f"| {name} | {vj:.0f} | {vt:.0f} | {ratio:.2f}x |", flush=True)
    return summaries


# ------------------------------------------------------------------------------------------------ k-means


def _mse(x, rec):
    return float(((x - rec) ** 2).sum(1).mean())


def kmeans_jax_side(x: np.ndarray, iters: int, out: dict):
    """sid's residual k-means: one untimed call (compiles, its time kept as ``first``), then the side."""
    from sid_quantizers.kmeans import fit_residual_kmeans

    t0 = time.perf_counter()
    fit_residual_kmeans(x, [256] * 3, seed=0, max_iter=iters, tol=0.0)
    out["first"] = time.perf_counter() - t0

    def side() -> float:
        t0 = time.perf_counter()
        q = fit_residual_kmeans(x, [256] * 3, seed=1, max_iter=iters, tol=0.0)
        elapsed = time.perf_counter() - t0
        out["mse"] = _mse(x, q.decode(q.fit_codes))
        return elapsed
    return side


def kmeans_faiss_side(x: np.ndarray, iters: int, out: dict):
    """faiss ``ResidualQuantizer`` training (greedy, plain k-means per level); None without faiss."""
    try:
        import faiss
    except ImportError:
        return None

    def side() -> float:
        rq = faiss.ResidualQuantizer(x.shape[1], 3, 8)
        rq.max_beam_size = 1
        rq.train_type = 0  # plain k-means per level (the default also runs progressive-dim k-means)
        rq.cp.niter = iters
        rq.cp.max_points_per_centroid = 1 << 30  # train on every row, like the JAX run
        t0 = time.perf_counter()
        rq.train(x)
        elapsed = time.perf_counter() - t0
        out["mse"] = _mse(x, rq.decode(rq.compute_codes(x)))
        return elapsed
    return side


def kmeans_sklearn_side(x: np.ndarray, iters: int, out: dict):
    from sklearn.cluster import KMeans

    def side() -> float:
        t0 = time.perf_counter()
        r = x.copy()
        for level in range(3):
            km = KMeans(256, init="k-means++", n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd",
                        random_state=level).fit(r)
            r = r - km.cluster_centers_[km.labels_]
        elapsed = time.perf_counter() - t0
        out["mse"] = float((r ** 2).sum(1).mean())
        return elapsed
    return side


def main() -> None:
    import json
    import os
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from method import Method, add_method_args, raise_rounds

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="3686x2560,100000x768")
    ap.add_argument("--rqvae-epochs", type=int, default=2, help="epochs per timed run")
    ap.add_argument("--rqvae-batch", default="20480", help="comma list of batch sizes (upstream 20480)")
    ap.add_argument("--profile", action="store_true", help="also time the phases of one full-batch step")
    ap.add_argument("--loop-vs-scan", action="store_true",
                    help="also time sid's per-batch Python loop against its epoch scan (batches < N only)")
    ap.add_argument("--kmeans-iter", type=int, default=20)
    ap.add_argument("--skip", default="", help="comma list of: rqvae, torch, jax_kmeans, faiss, sklearn")
    ap.add_argument("--json", type=Path, help="also write every comparison's summary and the method record here")
    add_method_args(ap)
    ap.add_argument("--repeats", type=int, dest="rounds", default=3,
                    help="timed runs per side, alternating (the same as --rounds)")
    args = ap.parse_args()
    raise_rounds(args, "--repeats/--rounds")
    method = Method.from_args(args)
    skip = set(filter(None, args.skip.split(",")))

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    with method.session():
        results = measure(args, skip, method)
    print("| shape | what | sid (JAX) | reference | ratio |")
    print("|---|---|---|---|---|")
    for r in results:
        if "row" in r:
            print(r["row"])
    rec = method.record
    print(f"method: {args.rounds} alternating rounds per comparison; load before {rec['load_before'][0]:.2f}, "
          f"others {rec['others_cores']:.2f} cores -> {'idle' if rec['idle'] else 'LOADED'}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results,
                                         "method": rec}, indent=2, default=str))


def measure(args, skip: set, method) -> list[dict]:
    """Every comparison of the run, each alternating its sides; a summary (and a table row) per comparison."""
    from method import report  # bench/method.py (main put bench/ on the path)

    import statistics

    out: list[dict] = []
    for shape in args.shapes.split(","):
        n, d = (int(v) for v in shape.split("x"))
        x = synthetic(n, d)
        for batch in ([] if "rqvae" in skip else [int(b) for b in args.rqvae_batch.split(",")]):
            print(f"{shape}: RQ-VAE batch {min(batch, n)}, seconds per run of {args.rqvae_epochs} epochs:", flush=True)
            r = bench_rqvae(x, batch, args.rqvae_epochs, method, "torch" not in skip)
            sm = report(r["times"], reference="torch", subject="sid")
            sid_t, ref_t = r["times"]["sid"], r["times"].get("torch") or [float("nan")]
            s = np.array([r["steps"] / v for v in sid_t])  # steps/s per run
            t = np.array([r["steps"] / v for v in ref_t])
            row = (f"| {shape} | RQ-VAE batch {min(batch, n)}, {r['steps']} steps/run, steps/s best (median) "
                   f"[first call {r['first']:.1f} s incl. compile; {r['flops'] / 1e9:.0f} GFLOP/step] | "
                   f"{s.max():.3f} ({np.median(s):.3f}) | torch {t.max():.3f} ({np.median(t):.3f}) | "
                   f"{s.max() / t.max():.2f}x ({np.median(s) / np.median(t):.2f}x) |")
            print(row, flush=True)
            out.append({"shape": shape, "what": f"rqvae batch {min(batch, n)}", "steps": r["steps"],
                        "first_s": r["first"], "flops_per_step": r["flops"], "summary": sm, "row": row})
            if args.loop_vs_scan and batch < n:
                print(f"{shape}: RQ-VAE batch {batch}, sid per-batch loop vs epoch scan, seconds per run:", flush=True)
                times = loop_vs_scan(x, batch, args.rqvae_epochs, method)
                sm = report(times, reference="loop", subject="scan")
                steps = args.rqvae_epochs * -(-n // batch)
                row = (f"| {shape} | RQ-VAE batch {batch}: sid per-batch loop vs epoch scan, steps/s best (median) | "
                       f"scan {steps / min(times['scan']):.3f} ({steps / statistics.median(times['scan']):.3f}) | "
                       f"loop {steps / min(times['loop']):.3f} ({steps / statistics.median(times['loop']):.3f}) | "
                       f"{sm['ratio_min']:.2f}x ({sm['ratio_median']:.2f}x) |")
                print(row, flush=True)
                out.append({"shape": shape, "what": f"rqvae batch {batch} loop vs scan", "summary": sm, "row": row})
        if args.profile and "rqvae" not in skip:
            out.append({"shape": shape, "what": "rqvae profile", "summary": profile_rqvae(x, method)})
        if "jax_kmeans" not in skip:
            mse: dict[str, dict] = {"sid": {}, "faiss": {}, "sklearn": {}}
            sides = {"sid": kmeans_jax_side(x, args.kmeans_iter, mse["sid"])}
            if "faiss" not in skip and (f := kmeans_faiss_side(x, args.kmeans_iter, mse["faiss"])) is not None:
                sides["faiss"] = f
            if "sklearn" not in skip:
                sides["sklearn"] = kmeans_sklearn_side(x, args.kmeans_iter, mse["sklearn"])
            print(f"{shape}: residual k-means 3x256, {args.kmeans_iter} it, seconds:", flush=True)
            times = method.alternate(sides)
            secs, med = min(times["sid"]), statistics.median(times["sid"])
            line = (f"| {shape} | residual k-means 3x256, {args.kmeans_iter} it, s best (median) (MSE) | "
                    f"{secs:.1f} ({med:.1f}) ({mse['sid']['mse']:.2f})")
            for ref in [k for k in sides if k != "sid"]:
                sm = report(times, reference=ref, subject="sid")
                row = (f"{line} [first {mse['sid']['first']:.1f}] | {ref} {min(times[ref]):.1f} "
                       f"({statistics.median(times[ref]):.1f}) ({mse[ref]['mse']:.2f}) | "
                       f"{1 / sm['ratio_min']:.2f}x ({1 / sm['ratio_median']:.2f}x) the time |")
                print(row, flush=True)
                out.append({"shape": shape, "what": f"residual kmeans vs {ref}", "mse": {k: v.get("mse") for k, v
                                                                                          in mse.items()},
                            "first_s": mse["sid"]["first"], "summary": sm, "row": row})
    return out

if __name__ == "__main__":
    main()
