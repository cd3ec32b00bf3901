"""Where sid's RL update spends its time: a `jax.profiler` trace of the trainer's own update jit,
kernels summed per call, next to the update's FLOP bound.

Same set-up as `bench/rl_vs_hf.py` (tiny random Qwen2, real 152k vocabulary, full Industrial
catalog, ``--prompts`` x ``--generations``). Runs `train_rl` for ``--steps`` steps, keeps the last
step's update inputs (the rollout tokens, their per-token log-probs, the distinct-prefix rows,
the advantages), then times the trainer's jitted `RLStep.update` on copies of the state
(it donates them) and traces ``--calls`` calls. The advantages are drawn at random (the kernels and
their cost do not depend on the values). On CPU the trace's kernels are the XLA thunks
named as in the update's HLO (their output shapes are printed from it). Not a test.

    .venv/bin/python bench/profile_rl.py [--prompts 4] [--generations 16] [--calls 3] [--top 16]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import rl_vs_hf  # noqa: E402


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    rl_vs_hf.add_setup_args(p, steps=3)  # --steps: trainer steps; the last one's update inputs are kept
    p.add_argument("--calls", type=int, default=3, help="traced update calls")
    p.add_argument("--top", type=int, default=16)
    a = p.parse_args()
    a.hf_steps = 0
    return a


def main() -> None:
    a = parse()
    with common.scratch_dir("sid-rl-profile-") as scratch:  # the HF folder and the trace; nothing else
        profile(a, scratch)


def profile(a: argparse.Namespace, scratch: Path) -> None:
    import jax
    import jax.numpy as jnp

    import sidcore.rl.step as rl_step
    from sidcore.rl.config import RLConfig
    from sidcore.rl.trainer import train_rl

    (scratch / "model").mkdir()
    env = rl_vs_hf.setup(a, scratch / "model")
    kept: dict = {}
    real_call = rl_step.RLStep.__call__

    def keep_inputs(self, params, opt_state, ref, ids, lengths, examples, rng, to_host=jax.device_get, *, train=True):
        # the inputs of this step's update, computed before the step runs (the step donates params)
        tokens, host_tokens, _, scores, token_lp = self.rollout_groups(params, ids, lengths, examples, rng, to_host)
        kept.update(step=self, params=jax.tree.map(jnp.copy, params), opt=jax.tree.map(jnp.copy, opt_state),
                    ref=ref, ids=ids, lengths=lengths, tokens=tokens, token_lp=token_lp,
                    rows=self.distinct(host_tokens), adv=np.asarray(np.random.default_rng(0).normal(
                        size=scores.shape), np.float32))
        return real_call(self, params, opt_state, ref, ids, lengths, examples, rng, to_host, train=train)

    rl_step.RLStep.__call__ = keep_inputs
    cfg = RLConfig(num_generations=a.generations, batch_size=a.prompts * a.generations, max_steps=a.steps,
                   lr_schedule="constant", warmup_ratio=0.0)
    train_rl(cfg, bundle=rl_vs_hf.sid_bundle(scratch / "model", env["tok"]), store=None, decoder=env["decoder"],
             rewards=env["rewards"], examples=env["examples"], catalog=env["catalog"], seed=0)
    rl_step.RLStep.__call__ = real_call
    st = kept["step"]
    args = (kept["ref"], kept["ids"], kept["lengths"], kept["tokens"], kept["adv"], None, kept["rows"], kept["token_lp"])

    def call() -> float:
        p, o = jax.tree.map(jnp.copy, kept["params"]), jax.tree.map(jnp.copy, kept["opt"])
        jax.block_until_ready((p, o))
        t0 = time.perf_counter()
        jax.block_until_ready(st.update(p, o, *args))
        return time.perf_counter() - t0

    for _ in range(2):
        call()
    times = sorted(call() for _ in range(7))
    hlo = st.update.lower(jax.tree.map(jnp.copy, kept["params"]), jax.tree.map(jnp.copy, kept["opt"]),
                          *args).compile().as_text()
    trace_dir = scratch / "trace"
    with jax.profiler.trace(str(trace_dir), create_perfetto_trace=True):
        for _ in range(a.calls):
            call()
    files = sorted(trace_dir.rglob("*.trace.json.gz"))
    with gzip.open(files[-1], "rt") as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    names = set(re.findall(r"^\s+(?:ROOT )?%([\w.-]+) = ", hlo, flags=re.M))  # the update's own kernels
    per: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and "dur" in e and e.get("name") in names:
            per[e["name"]] += e["dur"] / 1e3 / a.calls
            count[e["name"]] += 1 / a.calls
    rows = int(kept["rows"][0].size) if kept["rows"] is not None else 0
    passes = 3 + (0 if kept["token_lp"] is not None else 1) + (1 if cfg.beta and kept["ref"] is not None else 0)
    flops = passes * rows * len(env["tok"]) * a.hidden * 2
    peak = common.matmul_peak_flops()
    print(f"update: min {1e3 * times[0]:.1f} ms, median {1e3 * times[3]:.1f} ms per call; "
          f"kernels {sum(per.values()):.1f} ms per call")
    print(f"FLOP bound: {passes} vocabulary passes x {rows} rows x {len(env['tok'])} x {a.hidden} x 2 = "
          f"{flops / 1e9:.1f} GFLOP = {1e3 * flops / peak:.1f} ms at the measured {peak / 1e9:.0f} GFLOP/s")
    print("\n| kernel | ms per call | calls | output (HLO) |\n|---|---|---|---|")
    for name, ms in per.most_common(a.top):
        m = re.search(r"%" + re.escape(name) + r" = (\S+) ", hlo)
        print(f"| {name} | {ms:.2f} | {count[name]:.0f} | {m.group(1) if m else ''} |")


if __name__ == "__main__":
    main()
