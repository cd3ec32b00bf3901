"""Training throughput: `sid`'s jitted train step vs a plain PyTorch loop over `transformers.Qwen2ForCausalLM`.

Same model shape and weights (sid model exported with `sidcore.model.export_hf`, loaded with
``from_pretrained``), same real Industrial examples in the same order, batches of ``--batch`` examples,
AdamW. sid runs `sidcore.train.step.make_train_step` on batches from
`sidcore.train.batches.collate_step` under each ``--policies`` entry (``buckets``, ``pack`` as the
train loop does them; ``pack_dense``: the same examples greedily packed into the fewest rows of
``max_len`` — a bench-only variant showing what packing could give); HF pads each batch to its
longest example (dynamic padding). Compile time (AOT ``lower().compile()`` of every distinct shape) is
reported apart from the timed steps.

Measurement (bench/method.py): after compiling and ``--warmup`` steps, the systems alternate for
``--rounds`` rounds (each sid policy, then HF, then again ...), each round a block of the same
``--steps`` timed steps per system (models and compiled programs stay warm; every round trains on,
from where the last one stopped). Reported per system: the median block (``seconds``, ``tokens_per_sec``,
``step_ms``) and the best (``seconds_min``, ``tokens_per_sec_best``); "vs HF" is the ratio of the
medians and of the mins. The load gate runs before anything is built; the JSON's ``method`` holds
the loads, the other processes' CPU and the idle mark. Not a test.

    .venv/bin/python bench/train_vs_hf.py [--steps 20] [--policies buckets,pack] [--compact-vocab]
        [--rounds 3] [--max-load 1.5] [--wait-idle 180] [--allow-loaded]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from method import Method, add_method_args, raise_rounds, report  # noqa: E402


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_model_args(p)
    p.add_argument("--batch", type=int, default=16, help="examples per optimizer step")
    p.add_argument("--steps", type=int, default=20, help="timed steps per system and round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing (after compiling)")
    p.add_argument("--policies", default="buckets,pack,pack_dense")
    p.add_argument("--all-tasks", action="store_true", help="the three default tasks instead of sid_next_item")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--hf-micro", type=int, default=0,
                   help="HF examples per forward/backward (gradient accumulation, like HF Trainer's "
                        "per_device_train_batch_size); 0: the whole step at once")
    p.add_argument("--skip-hf", action="store_true")
    p.add_argument("--json", type=Path, help="also write the results here")
    add_method_args(p)
    return p.parse_args()


def flops_per_example(n: int, n_labels: int, mc: Any, vocab: int) -> float:
    """Useful training FLOPs of one example of `n` tokens (3 x forward: linears, causal attention, label logits)."""
    h, f, L = mc.hidden_size, mc.intermediate_size, mc.num_hidden_layers
    kv = mc.num_key_value_heads * mc.resolved_head_dim
    q = mc.num_attention_heads * mc.resolved_head_dim
    linear = 2 * (h * q + 2 * h * kv + q * h + 3 * h * f) * n * L
    attn = 2 * 2 * q * (n * (n + 1) / 2) * L  # QK^T and AV over the causal triangle
    head = 2 * h * vocab * n_labels
    return 3.0 * (linear + attn + head)


def dense_pack(examples: list[Any], seq_len: int, pad_id: int) -> dict[str, Any]:
    """One micro-batch: the examples packed into the fewest rows (`[1, R, seq_len]` after stacking)."""
    from sidcore.data import batching
    from sidcore.train import batches as B

    packed = batching.pack(examples, seq_len=seq_len, pad_id=pad_id)
    return B.step_batch([packed], pad_id=pad_id)


class SidSide:
    """One sid policy: compiled and warmed up on construction; `block()` times the ``--steps`` steps once."""

    def __init__(self, bundle: Any, cfg: Any, steps_examples: list[list[Any]], policy: str, warmup: int) -> None:
        import attrs
        import jax

        from sidcore.train import batches as B

        pad_id = int(bundle.tokenizer.pad_token_id)
        data_cfg = attrs.evolve(cfg.data, pad_policy="pack" if policy == "pack_dense" else policy)
        if policy == "pack_dense":
            host = [dense_pack(ex, data_cfg.max_len, pad_id) for ex in steps_examples]
        else:
            host = [B.collate_step(ex, micro_rows=len(ex), n_micro=1, data_cfg=data_cfg, pad_id=pad_id)
                    for ex in steps_examples]
        self.policy, self.host, self.warmup = policy, host, warmup
        self.params, self.opt_state, step = common.sid_train_step(bundle)
        self.compiled: dict[tuple, Any] = {}
        self.compile_s = 0.0
        for hb in host:
            key = _key(hb)
            if key not in self.compiled:
                t0 = time.perf_counter()
                self.compiled[key] = step.lower(self.params, self.opt_state, hb).compile()
                self.compile_s += time.perf_counter() - t0
        dev = [jax.device_put(hb) for hb in host]
        for hb in dev[:warmup]:
            self.params, self.opt_state, m = self.compiled[_key(hb)](self.params, self.opt_state, hb)
            float(m["loss"])
        self.timed = dev[warmup:]
        self.losses: list[float] = []

    def block(self) -> float:
        t0 = time.perf_counter()
        for hb in self.timed:
            self.params, self.opt_state, m = self.compiled[_key(hb)](self.params, self.opt_state, hb)
            self.losses.append(float(m["loss"]))
        return time.perf_counter() - t0

    def result(self, times: list[float]) -> dict[str, Any]:
        host = self.host[self.warmup :]
        real = sum(int((h["segment_ids"] > 0).sum()) for h in host)
        slots = sum(int(h["segment_ids"].size) for h in host)
        return {"policy": self.policy, **block_stats(times, real, len(self.timed)), "token_slots": slots,
                "compile_s": self.compile_s, "shapes": len(self.compiled), "first_loss": self.losses[0],
                "last_loss": self.losses[-1],
                "shape_list": sorted({str(tuple(h["input_ids"].shape)) for h in self.host})}


def block_stats(times: list[float], real: int, steps: int) -> dict[str, Any]:
    """Per-block figures of one system: the median block and the best one (every block: the same steps)."""
    import statistics

    med, best = statistics.median(times), min(times)
    return {"seconds": med, "seconds_min": best, "seconds_all": list(times), "real_tokens": real,
            "tokens_per_sec": real / med, "tokens_per_sec_best": real / best, "step_ms": 1000 * med / steps,
            "step_ms_min": 1000 * best / steps}


def _key(hb: dict[str, Any]) -> tuple:
    return tuple((k, tuple(hb[k].shape)) for k in sorted(hb))


class HfSide:
    """The HF PyTorch loop, warmed up on construction; `block()` times the ``--steps`` steps once."""

    def __init__(self, hf: Any, steps_examples: list[list[Any]], pad_id: int, warmup: int, threads: int,
                 dtype: str = "float32", micro: int = 0) -> None:
        import contextlib

        import torch

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        hf.train()
        dev = common.torch_device()
        self.hf = hf
        self.opt = torch.optim.AdamW(hf.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        # Mixed precision like sid's compute_dtype: fp32 master weights, bf16 matmuls.
        self.amp = (lambda: torch.autocast(device_type=dev, dtype=torch.bfloat16)) if dtype == "bfloat16" \
            else contextlib.nullcontext

        def batch(exs: list[Any]) -> tuple[torch.Tensor, ...]:
            n = max(len(e.input_ids) for e in exs)
            ids = torch.full((len(exs), n), pad_id, dtype=torch.long)
            lab = torch.full((len(exs), n), -100, dtype=torch.long)
            mask = torch.zeros((len(exs), n), dtype=torch.long)
            for r, e in enumerate(exs):
                ids[r, : len(e.input_ids)] = torch.tensor(e.input_ids)
                lab[r, : len(e.labels)] = torch.tensor(e.labels)
                mask[r, : len(e.input_ids)] = 1
            return ids.to(dev), mask.to(dev), lab.to(dev)

        micro = micro or max(len(ex) for ex in steps_examples)
        # each step: micro-batches, each padded to its own longest example
        host = [[batch(ex[i : i + micro]) for i in range(0, len(ex), micro)] for ex in steps_examples]
        for b in host[:warmup]:
            self.one(b)
        self.timed = host[warmup:]
        self.losses: list[float] = []

    def one(self, micros: Any) -> float:
        total = 0.0
        for ids, mask, lab in micros:
            with self.amp():
                out = self.hf(input_ids=ids, attention_mask=mask, labels=lab)
            (out.loss / len(micros)).backward()
            total += float(out.loss.detach()) / len(micros)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return total

    def block(self) -> float:
        common.torch_sync()
        t0 = time.perf_counter()
        for b in self.timed:
            self.losses.append(self.one(b))
        common.torch_sync()
        return time.perf_counter() - t0

    def result(self, times: list[float]) -> dict[str, Any]:
        real = sum(int(m.sum()) for step in self.timed for _, m, _ in step)
        slots = sum(int(m.numel()) for step in self.timed for _, m, _ in step)
        return {"policy": "hf dynamic", **block_stats(times, real, len(self.timed)), "token_slots": slots,
                "first_loss": self.losses[0], "last_loss": self.losses[-1]}


def main() -> None:
    args = parse()
    raise_rounds(args)
    method = Method.from_args(args)
    extra = [] if not args.all_tasks else ["tasks.sid_item_alignment=true", "tasks.fusion_seq_rec=true"]
    cfg = common.load_cfg(args, extra)
    print(f"machine: {common.machine_line()}")
    with method.session():  # the load gate before anything is built; others' CPU over the whole run
        out = measure(args, cfg, method)
    print(f"machine after: {common.machine_line()}")
    out["method"] = method.record
    sides = out.pop("_sides")
    results, hf_res, sheet = out["sid"], out["hf"], out["datasheet_peak_flops"]
    rows = []
    for r in results + ([hf_res] if hf_res else []):
        s = out["summary"].get(r["policy"], {"ratio_min": 1.0, "ratio_median": 1.0} if r is hf_res else {})
        rows.append([("sid " if r is not hf_res else "") + r["policy"], round(r["tokens_per_sec"]),
                     round(r["tokens_per_sec_best"]), f"{r['real_tokens'] / r['token_slots']:.2f}",
                     f"{r['step_ms']:.0f}", f"{s.get('ratio_median', float('nan')):.2f}x",
                     f"{s.get('ratio_min', float('nan')):.2f}x", f"{100 * r['flops_frac']:.1f}%",
                     f"{100 * r['mfu_datasheet']:.1f}%" if sheet else "-",
                     f"{r.get('compile_s', 0):.1f} ({r.get('shapes', '-')})",
                     f"{r['first_loss']:.3f} -> {r['last_loss']:.3f}"])
    print(common.table(rows, ["system", "real tok/s (median)", "best tok/s", "real frac", "ms/step (median)",
                              "vs HF (medians)", "vs HF (mins)", "of measured matmul peak (median)",
                              "MFU (datasheet)", "compile s (shapes)", "loss first -> last"]))
    rec = method.record
    print(f"method: {args.rounds} alternating rounds of {' / '.join(sides)}, {args.steps} steps each; load before "
          f"{rec['load_before'][0]:.2f}, others {rec['others_cores']:.2f} cores -> "
          f"{'idle' if rec['idle'] else 'LOADED'}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "machine": common.machine_line(),
                                         **out}, indent=2, default=str))


def measure(args: argparse.Namespace, cfg: Any, method: Method) -> dict[str, Any]:
    """Build, compile and warm up every system, then alternate them (`Method.alternate`)."""
    import jax
    import numpy as np
    from flax import nnx

    from sidcore.data.tasks import build_train_examples

    bundle = common.build_bundle(cfg)
    examples = build_train_examples(cfg.data, cfg.tasks, bundle.tokenizer, seed=cfg.seed)
    if args.compact_vocab:
        tok = bundle.tokenizer
        examples, rm = common.compact_examples(examples, [tok.pad_token_id, tok.eos_token_id])
        import attrs

        bundle = common.build_bundle(cfg, vocab_size=len(rm.ids))
        bundle = attrs.evolve(bundle, tokenizer=_PadOnly(rm.map[int(tok.pad_token_id)]))
    n_steps = args.warmup + args.steps
    rng = np.random.default_rng(args.seed)  # seeded example order, repeated if the data is short
    order = np.concatenate([rng.permutation(len(examples)) for _ in range(-(-n_steps * args.batch // len(examples)))])
    steps_examples = [[examples[i] for i in order[s * args.batch : (s + 1) * args.batch]] for s in range(n_steps)]
    mc = bundle.model_config
    vocab = bundle.real_vocab
    timed = [e for ex in steps_examples[args.warmup :] for e in ex]
    useful = sum(flops_per_example(len(e.input_ids), sum(1 for x in e.labels if x != -100), mc, vocab)
                 for e in timed)  # of one block
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(bundle.model)))
    print(f"model: vocab {vocab}, hidden {mc.hidden_size}, inter {mc.intermediate_size}, layers "
          f"{mc.num_hidden_layers}, heads {mc.num_attention_heads}/{mc.num_key_value_heads}, params {n_params/1e6:.2f}M")
    lens = [len(e.input_ids) for e in timed]
    print(f"data: {len(examples)} examples ({cfg.data.data_dir}); timed {len(timed)} examples, "
          f"mean {np.mean(lens):.0f} / max {max(lens)} tokens; batch {args.batch}; "
          f"{args.steps} timed steps per round after {args.warmup} warm-up, {args.rounds} rounds")
    peak = common.matmul_peak_flops(dtype=args.dtype)
    sheet = common.datasheet_peak(args.dtype)
    print(f"measured {args.dtype} matmul peak (jitted square matmul loop): {peak/1e9:.1f} GFLOP/s"
          + (f"; datasheet dense peak {sheet/1e12:.0f} TFLOP/s" if sheet else ""))

    sides: dict[str, Any] = {}
    for pol in args.policies.split(","):
        sides[pol] = SidSide(bundle, cfg, steps_examples, pol, args.warmup)
        print(f"  sid {pol}: compile {sides[pol].compile_s:.1f}s ({len(sides[pol].compiled)} shapes)", flush=True)
    if not args.skip_hf:
        with tempfile.TemporaryDirectory() as tmp:
            hf = common.export_to_hf(bundle, Path(tmp) / "hf")
        sides["hf"] = HfSide(hf, steps_examples, int(bundle.tokenizer.pad_token_id), args.warmup, args.threads,
                             args.dtype, args.hf_micro)
    times = method.alternate({name: side.block for name, side in sides.items()})
    summary = {}
    for name in sides:
        if name != "hf":
            print(f"sid {name} vs hf (block seconds of {args.steps} steps):")
            summary[name] = report(times, reference="hf", subject=name)
    results, hf_res = [], None
    for name, side in sides.items():
        r = side.result(times[name])
        r["flops_frac"] = useful / r["seconds"] / peak
        r["flops_frac_best"] = useful / r["seconds_min"] / peak
        r["mfu_datasheet"] = useful / r["seconds"] / sheet if sheet else None
        if name == "hf":
            hf_res = r
        else:
            results.append(r)
    del sides
    return {"peak_flops": peak, "datasheet_peak_flops": sheet, "useful_flops": useful, "sid": results,
            "hf": hf_res, "summary": summary, "_sides": list(times)}


class _PadOnly:
    """Tokenizer stand-in for compact-vocab runs (only the pad id is used)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_token_id = pad_id
        self.eos_token_id = pad_id


if __name__ == "__main__":
    main()
