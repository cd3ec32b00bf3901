"""Where a train step's device time goes: a `jax.profiler` trace of `sid`'s train step, summed per kernel.

Builds the model and batches like `bench/train_vs_hf.py` (same flags), runs the step a few times,
traces ``--steps`` more and prints the kernels by total device time (from the Perfetto trace JSON
that `jax.profiler.trace(create_perfetto_trace=True)` writes). Meant for a GPU (on CPU the trace has
no device kernels). Not a test.

    python bench/profile_step.py --preset qwen2_5_0_5b --dtype bfloat16 --batch 64 [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_model_args(p)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=3, help="traced steps")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--out", type=Path, default=Path("/tmp/sid-profile"))
    return p.parse_args()


def kernel_table(trace_dir: Path, top: int, steps: int) -> str:
    files = sorted(trace_dir.rglob("*.trace.json.gz"))
    if not files:
        return "no perfetto trace written"
    with gzip.open(files[-1], "rt") as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    names = {}  # pid -> process name
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            names[e["pid"]] = e["args"].get("name", "")
    dev_pids = {p for p, n in names.items() if "/device:GPU" in n}
    per = collections.Counter()
    count = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("pid") in dev_pids and "dur" in e:
            per[e["name"]] += e["dur"]
            count[e["name"]] += 1
    total = sum(per.values())
    rows = [[n[:90], f"{us / 1000 / steps:.2f}", f"{100 * us / max(total, 1):.1f}%", count[n] // steps]
            for n, us in per.most_common(top)]
    head = f"device processes: {sorted(names[p] for p in dev_pids)}; kernel time per step {total / 1000 / steps:.1f} ms"
    return head + "\n" + common.table(rows, ["kernel", "ms/step", "share", "calls/step"])


def main() -> None:
    args = parse()
    cfg = common.load_cfg(args)
    import jax
    import numpy as np

    from sidcore.data.tasks import build_train_examples
    from sidcore.train import batches as B

    print(f"machine: {common.machine_line()}")
    bundle = common.build_bundle(cfg)
    examples = build_train_examples(cfg.data, cfg.tasks, bundle.tokenizer, seed=cfg.seed)
    rng = np.random.default_rng(0)
    pad_id = int(bundle.tokenizer.pad_token_id)
    n = 3 + args.steps
    order = np.concatenate([rng.permutation(len(examples)) for _ in range(-(-n * args.batch // len(examples)))])
    host = [B.collate_step([examples[i] for i in order[s * args.batch:(s + 1) * args.batch]],
                           micro_rows=args.batch, n_micro=1, data_cfg=cfg.data, pad_id=pad_id) for s in range(n)]
    shapes = {tuple(h["input_ids"].shape) for h in host}
    host = [h for h in host if tuple(h["input_ids"].shape) == tuple(host[0]["input_ids"].shape)]
    print(f"batch shapes {sorted(shapes)}; using {tuple(host[0]['input_ids'].shape)} x {len(host)} steps")
    params, opt_state, step = common.sid_train_step(bundle)
    dev = [jax.device_put(h) for h in host]
    losses = []
    for hb in dev[: len(dev) - args.steps]:
        params, opt_state, m = step(params, opt_state, hb)
        losses.append(float(m["loss"]))
    print(f"attention {bundle.model.model.layers[0].self_attn.impl}; untimed step losses {losses}")
    t0 = time.perf_counter()
    with jax.profiler.trace(str(args.out), create_perfetto_trace=True):
        for hb in dev[len(dev) - args.steps:]:
            params, opt_state, m = step(params, opt_state, hb)
        float(m["loss"])
    wall = time.perf_counter() - t0
    real = sum(int((h["segment_ids"] > 0).sum()) for h in host[len(host) - args.steps:])
    print(f"traced {args.steps} steps: {1000 * wall / args.steps:.1f} ms/step wall (with tracing), "
          f"{real / wall:.0f} real tok/s")
    print(kernel_table(args.out, args.top, args.steps))


if __name__ == "__main__":
    main()
