"""Decoding throughput: `sid`'s jitted trie decoder vs transformers ``generate`` + a trie logits processor.

Same model and weights (sid model exported with `sidcore.model.export_hf`), the same real Industrial
test prompts (eval prompt of reference-spec §2.4 via `sidcore.data.tasks.build_eval_prompts`),
50 beams, 50 returned sequences, length penalty 0. sid runs through `sidcore.eval.evaluator.Evaluator`
(prefill buckets, batches of ``eval.batch_size``) with the ``trie`` decoder and with ``pure_beam``
(HF semantics, ``max_new_tokens`` = the trie path length; and the fixed-length variant). The first
``Evaluator.predict`` includes compilation; the ``--rounds`` (at least 3) further passes over the same
prompts do not. HF runs
``generate(num_beams=50, num_return_sequences=50, length_penalty=0.0, max_new_tokens=5)`` with a
MiniOneRec-style processor (Python dict: generated prefix -> allowed next tokens) on ``--hf-prompts``
prompts. The overlap of the two systems' 50 SIDs per prompt is printed as a sanity check.

Measurement (bench/method.py): after every decoder's cold pass, each round runs one warm pass of
every sid decoder and one HF pass, in that order, for ``--rounds`` rounds (``--rounds 2`` in older
commands is raised to 3). Samples are seconds per prompt (sid and HF decode different numbers of
prompts); "excl. compile" prompts/s is the best pass (``pps_warm``), ``pps_warm_median`` the median,
"vs HF" the ratio of the mins and of the medians. The load gate runs before anything is built; the
JSON's ``method`` holds the loads, the other processes' CPU and the idle mark. Not a test.

    .venv/bin/python bench/eval_vs_hf.py [--prompts 64] [--hf-prompts 16] [--rounds 3] [--allow-loaded]
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
    p.add_argument("--prompts", type=int, default=64, help="test prompts for sid")
    p.add_argument("--hf-prompts", type=int, default=16, help="test prompts for HF (a prefix of sid's)")
    p.add_argument("--hf-batch", type=int, default=8)
    p.add_argument("--batch", type=int, default=8, help="sid eval.batch_size")
    p.add_argument("--beams", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--decoders", default="trie,pure_beam,pure_beam fixed_length",
                   help="comma-separated subset of: trie, pure_beam, pure_beam fixed_length")
    p.add_argument("--skip-hf", action="store_true")
    p.add_argument("--json", type=Path)
    add_method_args(p)
    return p.parse_args()


def sid_cold(cfg: Any, bundle: Any, decoder: Any, catalog: Any, prompts: list[Any], params: Any) -> tuple:
    """First pass over the prompts (compiles every prefill bucket used): (evaluator, result)."""
    from sidcore.eval.evaluator import Evaluator

    ev = Evaluator(cfg.eval, compute_dtype=cfg.jax.compute_dtype, bundle=bundle, decoder=decoder, catalog=catalog,
                   metrics=[], prompts=prompts)
    t0 = time.perf_counter()
    preds, _ = ev.predict(params)
    cold = time.perf_counter() - t0
    return ev, {"cold_s": cold, "pps_cold": len(prompts) / cold, "compiles": ev.compiles, "preds": preds,
                "warm_runs": []}


def sid_warm(ev: Any, res: dict[str, Any], params: Any, n: int) -> float:
    """One more pass (nothing compiles): its seconds per prompt. The best pass is reported."""
    import statistics

    t0 = time.perf_counter()
    preds, _ = ev.predict(params)
    res["warm_runs"].append(time.perf_counter() - t0)
    assert preds == res["preds"] and ev.compiles == res["compiles"]
    res["warm_s"] = min(res["warm_runs"])
    res["warm_median_s"] = statistics.median(res["warm_runs"])
    res["pps_warm"] = n / res["warm_s"]
    res["pps_warm_median"] = n / res["warm_median_s"]
    res["compile_s"] = res["cold_s"] - res["warm_s"]
    return res["warm_runs"][-1] / n


def hf_eval(hf: Any, tok: Any, catalog: Any, prompts: list[Any], beams: int, batch: int, threads: int,
            dtype: str = "float32", device: str | None = None) -> dict:
    """HF ``generate`` + trie processor; `device` None: where JAX runs (this imports jax)."""
    import torch
    import transformers

    torch.set_num_threads(threads)
    dev = device or common.torch_device()
    if dtype == "bfloat16":
        hf = hf.to(torch.bfloat16)
    eos, pad = int(tok.eos_token_id), int(tok.pad_token_id)
    paths = common.catalog_paths(catalog, eos)  # [N, T]
    allowed: dict[tuple[int, ...], list[int]] = {}
    for p in paths.tolist():
        for t in range(len(p)):
            allowed.setdefault(tuple(p[:t]), [])
            if p[t] not in allowed[tuple(p[:t])]:
                allowed[tuple(p[:t])].append(p[t])

    class TrieMask(transformers.LogitsProcessor):
        """log_softmax, then -inf-like mask on tokens that do not continue a catalog path."""

        def __init__(self, prompt_len: int) -> None:
            self.prompt_len = prompt_len

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            scores = torch.log_softmax(scores.float(), dim=-1)
            mask = torch.full_like(scores, -1e6)
            for row, prefix in enumerate(input_ids[:, self.prompt_len :].tolist()):  # one host copy
                ok = allowed.get(tuple(prefix))
                if ok:
                    mask[row, ok] = 0.0  # one indexed write per beam row, as MiniOneRec's processor
            return scores + mask

    gen = transformers.GenerationConfig(num_beams=beams, num_return_sequences=beams, do_sample=False,
                                        length_penalty=0.0, max_new_tokens=paths.shape[1], early_stopping=True,
                                        pad_token_id=pad, eos_token_id=eos)
    hf.eval()
    preds = []
    t0 = time.perf_counter()
    for s in range(0, len(prompts), batch):
        chunk = prompts[s : s + batch]
        n = max(len(p.input_ids) for p in chunk)
        ids = torch.full((len(chunk), n), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), n), dtype=torch.long)
        for r, p in enumerate(chunk):  # left padding, like upstream evaluate.py
            ids[r, n - len(p.input_ids) :] = torch.tensor(p.input_ids)
            mask[r, n - len(p.input_ids) :] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        with torch.no_grad():
            out = hf.generate(input_ids=ids, attention_mask=mask, generation_config=gen,
                              logits_processor=transformers.LogitsProcessorList([TrieMask(n)]))
        new = out[:, n:].reshape(len(chunk), beams, -1).tolist()
        depth = catalog.token_ids.shape[1]
        preds += [["".join(tok.convert_ids_to_tokens(seq[:depth])) for seq in row] for row in new]
    common.torch_sync()
    wall = time.perf_counter() - t0
    return {"seconds": wall, "pps": len(prompts) / wall, "preds": preds}


def main() -> None:
    args = parse()
    raise_rounds(args)
    method = Method.from_args(args)
    cfg = common.load_cfg(args, [f"eval.batch_size={args.batch}", f"eval.num_beams={args.beams}"])
    print(f"machine: {common.machine_line()}")
    with method.session():  # the load gate before anything is built; others' CPU over the whole run
        out = measure(args, cfg, method)
    print(f"machine after: {common.machine_line()}")
    res, hf, summary = out["sid"], out["hf"], out["summary"]
    rows = []
    tw = res["trie"]["warm_s"]
    for name, r in res.items():
        sm = summary.get(name, {})
        rows.append([f"sid {name}", f"{r['pps_warm']:.2f}", f"{r['pps_warm_median']:.2f}", f"{r['pps_cold']:.2f}",
                     r["compiles"], f"{r['compile_s']:.1f}", f"{sm.get('ratio_min', float('nan')):.1f}x",
                     f"{sm.get('ratio_median', float('nan')):.1f}x", f"{tw / r['warm_s']:.3f}"])
    if hf:
        rows.append(["hf generate + trie processor", f"{hf['pps']:.3f}", f"{hf['pps_median']:.3f}", "-", "-", "-",
                     "1.0x", "1.0x", "-"])
    print(common.table(rows, ["system", "prompts/s (excl. compile, best)", "prompts/s (median)",
                              "prompts/s (incl. compile)", "compiles", "compile s", "vs HF (excl., mins)",
                              "vs HF (medians)", "trie time / this time"]))
    rec = method.record
    print(f"method: {args.rounds} alternating rounds of {' / '.join(out['order'])}; load before "
          f"{rec['load_before'][0]:.2f}, others {rec['others_cores']:.2f} cores -> "
          f"{'idle' if rec['idle'] else 'LOADED'}")
    if args.json:
        for r in res.values():
            r.pop("preds")
        if hf:
            hf.pop("preds")
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "sid": res, "hf": hf,
                                         "summary": summary, "method": rec}, indent=2))


def measure(args: argparse.Namespace, cfg: Any, method: Method) -> dict[str, Any]:
    """Build, compile (cold passes) and export, then alternate the warm passes (`Method.alternate`)."""
    import statistics

    import numpy as np
    from flax import nnx

    from sid_decoders import pure_beam, trie
    from sid_decoders.config import PureBeamConfig, TrieConfig
    from sidcore.data.catalog import build_catalog
    from sidcore.data.tasks import build_eval_prompts

    bundle = common.build_bundle(cfg)
    tok = bundle.tokenizer
    catalog = build_catalog(cfg.data.info_file, cfg.data.sid_index_path, tok)
    prompts = build_eval_prompts(cfg.data, tok, split="test", seed=cfg.seed)[: args.prompts]
    lens = [len(p.input_ids) for p in prompts]
    print(f"data: {len(prompts)} test prompts ({cfg.data.data_dir}), mean {np.mean(lens):.0f} / max {max(lens)} "
          f"tokens; catalog {len(catalog.sids)} SIDs; beams {args.beams}; sid batch {args.batch}; "
          f"prefill buckets {cfg.eval.prefill_buckets}")
    mc = bundle.model_config
    print(f"model: vocab {bundle.real_vocab}, hidden {mc.hidden_size}, layers {mc.num_hidden_layers}")
    params = nnx.to_pure_dict(nnx.split(bundle.model)[1])
    eos = int(tok.eos_token_id)
    t_dec = trie.build(TrieConfig(), catalog=catalog, eos_id=eos)
    path_len = t_dec.max_new_tokens()
    decoders = {
        "trie": t_dec,
        "pure_beam": pure_beam.build(PureBeamConfig(max_new_tokens=path_len), catalog=catalog, eos_id=eos),
        "pure_beam fixed_length": pure_beam.build(PureBeamConfig(fixed_length=True), catalog=catalog, eos_id=eos),
    }
    wanted = [d.strip() for d in args.decoders.split(",")]
    decoders = {k: v for k, v in decoders.items() if k in wanted or k == "trie"}
    res: dict[str, Any] = {}
    evs: dict[str, Any] = {}
    for name, dec in decoders.items():
        evs[name], res[name] = sid_cold(cfg, bundle, dec, catalog, prompts, params)
    sides = {name: (lambda name=name: sid_warm(evs[name], res[name], params, len(prompts))) for name in decoders}
    hf: dict[str, Any] | None = None
    if not args.skip_hf:
        with tempfile.TemporaryDirectory() as tmp:
            model = common.export_to_hf(bundle, Path(tmp) / "hf")
        hf_prompts = prompts[: args.hf_prompts]
        hf_runs: list[float] = []

        def hf_side() -> float:
            nonlocal hf
            hf = hf_eval(model, tok, catalog, hf_prompts, args.beams, args.hf_batch, args.threads, args.dtype)
            hf_runs.append(hf["seconds"])
            return hf["seconds"] / len(hf_prompts)

        sides["hf"] = hf_side
    print("seconds per prompt, alternating:")
    times = method.alternate(sides)
    if hf is not None:
        del model
        hf.update({"seconds": min(hf_runs), "seconds_median": statistics.median(hf_runs), "seconds_all": hf_runs,
                   "pps": len(hf_prompts) / min(hf_runs), "pps_median": len(hf_prompts) / statistics.median(hf_runs)})
        same_sets = sum(set(a) == set(b) for a, b in zip(hf["preds"], res["trie"]["preds"]))
        same_lists = sum(a == b for a, b in zip(hf["preds"], res["trie"]["preds"]))
        hf["same_sets"], hf["same_lists"] = same_sets, same_lists
    for name, r in res.items():
        print(f"  sid {name}: {r['pps_warm']:.2f} prompts/s warm (best; median {r['pps_warm_median']:.2f}), "
              f"{r['pps_cold']:.2f} cold, {r['compiles']} compiles; warm passes "
              f"{[round(x, 1) for x in r['warm_runs']]} s", flush=True)
    if hf is not None:
        print(f"  hf trie: {hf['pps']:.3f} prompts/s (best; median {hf['pps_median']:.3f}); same 50-SID set as sid "
              f"trie on {hf['same_sets']}/{len(hf['preds'])} prompts, same order on {hf['same_lists']}", flush=True)
    summary = {}
    for name in decoders:
        if hf is not None:
            print(f"sid {name} vs hf (seconds per prompt):")
            summary[name] = report(times, reference="hf", subject=name, unit="s/prompt")
    peak = common.matmul_peak_flops(dtype=args.dtype)
    h, L, V = mc.hidden_size, mc.num_hidden_layers, bundle.real_vocab
    per_tok = 2 * L * (2 * h * h + 2 * h * (mc.num_key_value_heads * mc.resolved_head_dim) + 3 * h * mc.intermediate_size)
    useful = sum(per_tok * n + 2 * h * V + path_len * args.beams * (per_tok + 2 * h * V) for n in lens)
    print(f"measured {args.dtype} matmul peak {peak / 1e9:.1f} GFLOP/s; sid trie (warm) at "
          f"{100 * useful / res['trie']['warm_s'] / peak:.1f}% of it (linears + LM head FLOPs)")
    return {"sid": res, "hf": hf, "summary": summary, "order": list(sides)}

if __name__ == "__main__":
    main()
