"""Training throughput: `sid`'s jitted train step vs a plain PyTorch loop over `transformers.Qwen2ForCausalLM`.

Same model shape and weights (sid model exported with `sidcore.model.export_hf`, loaded with
``from_pretrained``), same real Industrial examples in the same order, batches of ``--batch`` examples,
AdamW. sid runs `sidcore.train.step.make_train_step` on batches from
`sidcore.train.batches.collate_step` under each ``--policies`` entry (``buckets``, ``pack`` as the
train loop does them; ``pack_dense``: the same examples greedily packed into the fewest rows of
``max_len`` — a bench-only variant showing what packing could give); HF pads each batch to its
longest example (dynamic padding). Compile time (AOT ``lower().compile()`` of every distinct shape) is
reported apart from the timed steps. Not a test.

    .venv/bin/python bench/train_vs_hf.py [--steps 20] [--policies buckets,pack] [--compact-vocab]
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


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_model_args(p)
    p.add_argument("--batch", type=int, default=16, help="examples per optimizer step")
    p.add_argument("--steps", type=int, default=20, help="timed steps per system")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing (after compiling)")
    p.add_argument("--policies", default="buckets,pack,pack_dense")
    p.add_argument("--all-tasks", action="store_true", help="the three default tasks instead of sid_next_item")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--hf-micro", type=int, default=0,
                   help="HF examples per forward/backward (gradient accumulation, like HF Trainer's "
                        "per_device_train_batch_size); 0: the whole step at once")
    p.add_argument("--skip-hf", action="store_true")
    p.add_argument("--json", type=Path, help="also write the results here")
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


def run_sid(bundle: Any, cfg: Any, steps_examples: list[list[Any]], policy: str, warmup: int) -> dict[str, Any]:
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
    params, opt_state, step = common.sid_train_step(bundle)
    compiled: dict[tuple, Any] = {}
    t_compile = 0.0
    for hb in host:
        key = _key(hb)
        if key not in compiled:
            t0 = time.perf_counter()
            compiled[key] = step.lower(params, opt_state, hb).compile()
            t_compile += time.perf_counter() - t0
    dev = [jax.device_put(hb) for hb in host]
    for hb in dev[:warmup]:
        params, opt_state, m = compiled[_key(hb)](params, opt_state, hb)
        float(m["loss"])
    timed = dev[warmup:]
    losses = []
    t0 = time.perf_counter()
    for hb in timed:
        params, opt_state, m = compiled[_key(hb)](params, opt_state, hb)
        losses.append(float(m["loss"]))
    wall = time.perf_counter() - t0
    real = sum(int((h["segment_ids"] > 0).sum()) for h in host[warmup:])
    slots = sum(int(h["segment_ids"].size) for h in host[warmup:])
    return {"policy": policy, "seconds": wall, "real_tokens": real, "token_slots": slots,
            "tokens_per_sec": real / wall, "step_ms": 1000 * wall / len(timed), "compile_s": t_compile,
            "shapes": len(compiled), "first_loss": losses[0], "last_loss": losses[-1],
            "shape_list": sorted({str(tuple(h["input_ids"].shape)) for h in host})}


def _key(hb: dict[str, Any]) -> tuple:
    return tuple((k, tuple(hb[k].shape)) for k in sorted(hb))


def run_hf(hf: Any, steps_examples: list[list[Any]], pad_id: int, warmup: int, threads: int,
           dtype: str = "float32", micro: int = 0) -> dict[str, Any]:
    import contextlib

    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    hf.train()
    dev = common.torch_device()
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    # Mixed precision like sid's compute_dtype: fp32 master weights, bf16 matmuls.
    amp = (torch.autocast(device_type=dev, dtype=torch.bfloat16) if dtype == "bfloat16"
           else contextlib.nullcontext())

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

    def one(micros) -> float:
        total = 0.0
        for ids, mask, lab in micros:
            with amp:
                out = hf(input_ids=ids, attention_mask=mask, labels=lab)
            (out.loss / len(micros)).backward()
            total += float(out.loss.detach()) / len(micros)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return total

    for b in host[:warmup]:
        one(b)
    losses = []
    common.torch_sync()
    t0 = time.perf_counter()
    for b in host[warmup:]:
        losses.append(one(b))
    common.torch_sync()
    wall = time.perf_counter() - t0
    real = sum(int(m.sum()) for step in host[warmup:] for _, m, _ in step)
    slots = sum(int(m.numel()) for step in host[warmup:] for _, m, _ in step)
    return {"policy": "hf dynamic", "seconds": wall, "real_tokens": real, "token_slots": slots,
            "tokens_per_sec": real / wall, "step_ms": 1000 * wall / len(host[warmup:]),
            "first_loss": losses[0], "last_loss": losses[-1]}


def main() -> None:
    args = parse()
    extra = [] if not args.all_tasks else ["tasks.sid_item_alignment=true", "tasks.fusion_seq_rec=true"]
    cfg = common.load_cfg(args, extra)
    print(f"machine: {common.machine_line()}")
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
                 for e in timed)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(bundle.model)))
    print(f"model: vocab {vocab}, hidden {mc.hidden_size}, inter {mc.intermediate_size}, layers "
          f"{mc.num_hidden_layers}, heads {mc.num_attention_heads}/{mc.num_key_value_heads}, params {n_params/1e6:.2f}M")
    lens = [len(e.input_ids) for e in timed]
    print(f"data: {len(examples)} examples ({cfg.data.data_dir}); timed {len(timed)} examples, "
          f"mean {np.mean(lens):.0f} / max {max(lens)} tokens; batch {args.batch}; "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    peak = common.matmul_peak_flops(dtype=args.dtype)
    sheet = common.datasheet_peak(args.dtype)
    print(f"measured {args.dtype} matmul peak (jitted square matmul loop): {peak/1e9:.1f} GFLOP/s"
          + (f"; datasheet dense peak {sheet/1e12:.0f} TFLOP/s" if sheet else ""))

    results = []
    for pol in args.policies.split(","):
        r = run_sid(bundle, cfg, steps_examples, pol, args.warmup)
        r["flops_frac"] = useful / r["seconds"] / peak
        results.append(r)
        print(f"  sid {pol}: {r['tokens_per_sec']:.0f} tok/s, compile {r['compile_s']:.1f}s ({r['shapes']} shapes)",
              flush=True)
    hf_res = None
    if not args.skip_hf:
        with tempfile.TemporaryDirectory() as tmp:
            hf = common.export_to_hf(bundle, Path(tmp) / "hf")
        hf_res = run_hf(hf, steps_examples, int(bundle.tokenizer.pad_token_id), args.warmup, args.threads,
                        args.dtype, args.hf_micro)
        del hf
        hf_res["flops_frac"] = useful / hf_res["seconds"] / peak
        print(f"  hf: {hf_res['tokens_per_sec']:.0f} tok/s", flush=True)
    rows = []
    for r in results + ([hf_res] if hf_res else []):
        r["mfu_datasheet"] = useful / r["seconds"] / sheet if sheet else None
        ratio = r["tokens_per_sec"] / hf_res["tokens_per_sec"] if hf_res else float("nan")
        rows.append([("sid " if r is not hf_res else "") + r["policy"], round(r["tokens_per_sec"]),
                     f"{r['real_tokens'] / r['token_slots']:.2f}", f"{r['step_ms']:.0f}", f"{ratio:.2f}x",
                     f"{100 * r['flops_frac']:.1f}%",
                     f"{100 * r['mfu_datasheet']:.1f}%" if sheet else "-",
                     f"{r.get('compile_s', 0):.1f} ({r.get('shapes', '-')})",
                     f"{r['first_loss']:.3f} -> {r['last_loss']:.3f}"])
    print(common.table(rows, ["system", "real tok/s", "real frac", "ms/step", "vs HF", "of measured matmul peak",
                              "MFU (datasheet)", "compile s (shapes)", "loss first -> last"]))
    print(f"machine after: {common.machine_line()}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "peak_flops": peak,
                                         "datasheet_peak_flops": sheet, "machine": common.machine_line(),
                                         "useful_flops": useful, "sid": results, "hf": hf_res}, indent=2, default=str))


class _PadOnly:
    """Tokenizer stand-in for compact-vocab runs (only the pad id is used)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_token_id = pad_id
        self.eos_token_id = pad_id


if __name__ == "__main__":
    main()
