"""`sid serve` under load: a closed-loop HTTP load generator on 127.0.0.1 vs the naive path.

The server is the real one (`sidcore.serve.server.make_app` on uvicorn, dynamic batching, compiled
shapes) running in this process on a thread; the load generator runs in a separate process (asyncio +
httpx, ``C`` users each sending one request, waiting for the answer, sending the next), so it does not
share the server's interpreter. Each concurrency level is bounded by ``--requests`` and ``--seconds``.
Requests are the real Industrial test histories (``history_item_sid``, at most ``--max-history`` items),
one user per request, 50 beams, top 10. Reported per level: requests/s, p50/p95/p99 latency and the
mean users per decoder call (from /metrics). Next to it: one warm decoder call for one user (the
floor of a request's latency), and the naive path -- transformers ``generate`` with a MiniOneRec-style
trie processor, one request at a time, same weights (exported) and prompts. The model is
configs/default.yaml's (random init: speed does not depend on the weights).

Method (`bench/method.py`): the naive path and each concurrency level are the sides of ``--rounds``
alternating rounds (naive, c1, c8, ... , naive, c1, ...); requests/s per level is the median (and
min) over the rounds, latencies are pooled over the rounds, "vs naive" is the ratio of the medians
(and of the mins) of seconds per request. Not a test.

    .venv/bin/python bench/serve_load.py [--concurrency 1,8,32,128] [--requests 256] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from method import Method, add_method_args, summarize  # noqa: E402


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_model_args(p)
    p.set_defaults(hidden=64, intermediate=128, data_dir="bundled-full")  # configs/default.yaml's model
    p.add_argument("--concurrency", default="1,8,32,128")
    p.add_argument("--requests", type=int, default=256, help="most requests per concurrency level")
    p.add_argument("--seconds", type=float, default=30.0, help="most seconds per concurrency level")
    p.add_argument("--beams", type=int, default=50)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--max-history", type=int, default=10, help="10: every prompt fits the 128 bucket")
    p.add_argument("--naive-requests", type=int, default=8, help="requests through HF generate (0: skip)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the naive path")
    p.add_argument("--json", type=Path)
    add_method_args(p)
    return p.parse_args()


def build(args: argparse.Namespace) -> tuple[Any, list[dict[str, Any]], list[Any]]:
    """(the `Recommender`, request bodies, their eval prompts)."""
    from sidcore.data.catalog import build_catalog
    from sidcore.data.minionerec import read_info
    from sidcore.data.tasks import build_eval_prompts
    from sidcore.eval.evaluator import params_in_compute_dtype
    from sidcore.model.merge import split_params
    from sidcore.model.sharding import shard_params
    from sidcore.plugins import load_plugins
    from sidcore.serve.engine import Recommender
    from sidcore.serve.load import Loaded

    cfg = common.load_cfg(args, [f"eval.num_beams={args.beams}"])
    bundle = common.build_bundle(cfg)
    _, _, params = split_params(bundle.model)
    params = params_in_compute_dtype(shard_params(params, bundle.mesh), cfg.jax.compute_dtype)
    catalog = build_catalog(cfg.data.info_file, cfg.data.sid_index_path, bundle.tokenizer)
    loaded = Loaded(cfg=cfg, bundle=bundle, params=params, catalog=catalog, info=read_info(cfg.data.info_file),
                    plugins=load_plugins(), source="bench")
    sizes = sorted({*(1 << i for i in range(12) if 1 << i < args.max_batch), args.max_batch})  # as sid serve
    rec = Recommender(loaded, num_beams=args.beams, top_k=10, batch_sizes=sizes)
    prompts = build_eval_prompts(cfg.data, bundle.tokenizer, split="test", seed=cfg.seed)
    bodies = []
    for p in prompts:
        sids = p.input_text.split("interaction history: ")[-1].split(", ")
        bodies.append({"history_item_sid": [s for s in sids if s][-args.max_history:]})
    return rec, bodies, prompts


def _client(port: int, bodies: list[dict[str, Any]], conc: int, n_max: int, seconds: float, out: Any) -> None:
    import httpx

    async def main() -> dict[str, Any]:
        lat: list[float] = []
        codes: dict[int, int] = {}
        sent = 0
        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600, limits=limits) as c:
            t0 = time.perf_counter()

            async def user() -> None:
                nonlocal sent
                while sent < n_max and time.perf_counter() - t0 < seconds:
                    body = bodies[sent % len(bodies)]
                    sent += 1
                    t = time.perf_counter()
                    r = await c.post("/v1/recommend", json=body)
                    lat.append(time.perf_counter() - t)
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1

            await asyncio.gather(*(user() for _ in range(conc)))
            wall = time.perf_counter() - t0
        return {"latencies": lat, "codes": codes, "wall": wall}

    out.put(asyncio.run(main()))


def _metric(text: str, name: str) -> float:
    return float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith(name + " ")))


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q / 100 * len(xs))) - 1))]


def start_server(rec: Any, args: argparse.Namespace) -> tuple[Any, str, int, dict[str, Any]]:
    """The real server on a free loopback port, on a thread; returns after /readyz (shapes compiled)."""
    import httpx
    import uvicorn

    from sidcore.serve.engine import install_compile_counter
    from sidcore.serve.server import Limits, make_app

    install_compile_counter()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    limits = Limits(max_batch=args.max_batch, max_wait_s=args.max_wait_ms / 1000, max_queue=4096,
                    max_history=args.max_history)
    server = uvicorn.Server(uvicorn.Config(make_app(rec, limits), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    while True:
        try:
            if httpx.get(base + "/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    ready = httpx.get(base + "/readyz").json()
    print(f"ready after {time.perf_counter() - t0:.1f}s: {len(ready['shapes'])} shapes compiled", flush=True)
    return server, base, port, ready


def run_level(base: str, port: int, bodies: list[dict[str, Any]], conc: int, args: argparse.Namespace
              ) -> dict[str, Any]:
    """One closed-loop load level from a separate process: its wall, latencies and mean batch."""
    import httpx

    ctx = mp.get_context("spawn")
    m0 = httpx.get(base + "/metrics").text
    q = ctx.Queue()
    proc = ctx.Process(target=_client, args=(port, bodies, conc, args.requests, args.seconds, q))
    proc.start()
    res = q.get()
    proc.join()
    m1 = httpx.get(base + "/metrics").text
    return {"wall": res["wall"], "latencies": res["latencies"], "codes": res["codes"],
            "calls": _metric(m1, "sid_batch_users_count") - _metric(m0, "sid_batch_users_count"),
            "users": _metric(m1, "sid_batch_users_sum") - _metric(m0, "sid_batch_users_sum")}


def level_row(conc: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One concurrency level over all rounds: requests/s per round (min/median), pooled latencies."""
    lat = [x for r in runs for x in r["latencies"]]
    rps = [len(r["latencies"]) / r["wall"] for r in runs]
    codes: dict[str, int] = {}
    for r in runs:
        for k, v in r["codes"].items():
            codes[k] = codes.get(k, 0) + v
    return {"concurrency": conc, "requests": len(lat), "codes": codes, "rps": statistics.median(rps),
            "rps_min": min(rps), "rps_all": rps, "p50_ms": 1e3 * pct(lat, 50), "p95_ms": 1e3 * pct(lat, 95),
            "p99_ms": 1e3 * pct(lat, 99),
            "mean_batch": sum(r["users"] for r in runs) / max(sum(r["calls"] for r in runs), 1)}


def one_call_ms(rec: Any, bodies: list[dict[str, Any]], repeats: int = 10) -> float:
    """Median wall time of one warm decoder call for one user (prompt -> decode -> items)."""
    q = [rec.parse(bodies[0])]
    rec.recommend(q)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        rec.recommend(q)
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def main() -> None:
    args = parse()
    method = Method.from_args(args)
    print(f"machine: {common.machine_line()}", flush=True)
    levels = [int(c) for c in args.concurrency.split(",")]
    with method.session():
        rec, bodies, prompts = build(args)
        one = one_call_ms(rec, bodies)
        print(f"one decoder call (1 user, {args.beams} beams, warm): {one:.1f} ms", flush=True)
        server, base, port, ready = start_server(rec, args)
        sides: dict[str, Any] = {}
        runs: dict[int, list[dict[str, Any]]] = {c: [] for c in levels}
        if args.naive_requests:
            import eval_vs_hf

            with tempfile.TemporaryDirectory() as d:
                hf = common.export_to_hf(rec.loaded.bundle, Path(d))
            naive_prompts = prompts[: args.naive_requests]
            eval_vs_hf.hf_eval(hf, rec.tokenizer, rec.catalog, naive_prompts[:1], args.beams, 1, args.threads)  # warm

            def naive() -> float:  # seconds per request, one at a time
                res = eval_vs_hf.hf_eval(hf, rec.tokenizer, rec.catalog, naive_prompts, args.beams, 1, args.threads)
                return 1.0 / res["pps"]

            sides["naive"] = naive
        for conc in levels:
            def level(conc: int = conc) -> float:  # seconds per request at this concurrency
                r = run_level(base, port, bodies, conc, args)
                runs[conc].append(r)
                return r["wall"] / max(len(r["latencies"]), 1)

            sides[f"c{conc}"] = level
        times = method.alternate(sides)
        import httpx

        after = httpx.get(base + "/readyz").json()
        assert after["compiles"] == ready["compiles"], "the server compiled while serving"
        server.should_exit = True
    rows = [level_row(c, runs[c]) for c in levels]
    naive_t = times.get("naive", [])
    naive_res = None
    if naive_t:
        naive_res = {"requests": args.naive_requests, "rps": 1.0 / statistics.median(naive_t),
                     "rps_max": 1.0 / min(naive_t), "ms_per_request": 1e3 * statistics.median(naive_t)}
    summaries = {f"c{c}": summarize(times, reference="naive", subject=f"c{c}") for c in levels} if naive_t else {}
    print("\n| concurrency | requests | req/s median (min) of rounds | p50 ms | p95 ms | p99 ms | mean batch | "
          "vs naive (medians / mins) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        sm = summaries.get(f"c{r['concurrency']}", {})
        vs = f"{sm['ratio_median']:.1f}x / {sm['ratio_min']:.1f}x" if sm else "-"
        print(f"| {r['concurrency']} | {r['requests']} | {r['rps']:.1f} ({r['rps_min']:.1f}) | {r['p50_ms']:.0f} | "
              f"{r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['mean_batch']:.1f} | {vs} |")
    if naive_res:
        print(f"| naive, 1 at a time | {args.naive_requests} x {len(naive_t)} rounds | {naive_res['rps']:.2f} | "
              f"{naive_res['ms_per_request']:.0f} | - | - | 1 | 1.0x |")
    print(f"p99 at concurrency {rows[0]['concurrency']} / one decoder call: {rows[0]['p99_ms'] / one:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"one_call_ms": one, "levels": rows, "naive": naive_res,
                                         "summaries": summaries, "method": method.record}, indent=1))


if __name__ == "__main__":
    main()
