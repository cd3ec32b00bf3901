"""RL steps/s: `sid`'s RL step (jitted trie beam rollout + host rewards + jitted GRPO update) vs a
PyTorch/transformers loop doing what upstream MiniOneRec does per step.

Same tiny random Qwen2 (saved as an HF folder, loaded by both), the real Qwen2.5 tokenizer with the
Industrial SID tokens, the full Industrial catalog (3,670 SIDs), the same RL prompts (SID history
task on the bundled valid split), G beams per prompt, ``--prompts`` prompts per step, rewards
rule + ranking, grpo advantages, beta 1e-3 with a frozen reference, AdamW.

HF loop per step: ``generate(num_beams=G, num_return_sequences=G, length_penalty=0)`` with a
MiniOneRec-style trie processor (Python dict over hashed prefixes, full-vocab log-softmax + -1e6
mask), string rewards, torch advantages, ``compute_loss`` (policy forward with grad + reference
forward), backward, AdamW step. sid: `sidcore.rl.trainer.train_rl` (update on one shared-prefix row
per prompt; ``--full-rows``: G full rows per prompt, upstream's layout); the first step of each sid
round (compilation) is excluded from its rate.

Method (`bench/method.py`): ``--rounds`` alternating rounds (sid ``--steps`` steps, then HF
``--hf-steps`` steps, again ...), min and median step time per side over all rounds, idle check
before and the CPU other processes used. The FLOP bound of the update: its vocabulary passes
(the backward's recomputed logits, dh and dW, the reference forward, and the policy forward unless
the rollout's log-probs are reused: `rl/vocab_passes` x ``rows x V x H x 2``, rows =
`rl/normaliser_rows`) at the measured fp32 matmul peak. Not a test.

    .venv/bin/python bench/rl_vs_hf.py [--prompts 4] [--generations 16] [--steps 8] [--hf-steps 3]
                                       [--rounds 3] [--full-rows] [--skip-hf] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import sys

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from method import Method, add_method_args, summarize  # noqa: E402


def add_setup_args(p: argparse.ArgumentParser, steps: int) -> None:
    """The shape flags `setup` reads (shared with bench/profile_rl.py)."""
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--generations", type=int, default=16)
    p.add_argument("--steps", type=int, default=steps, help="sid steps per round (the first, compiling, is not timed)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setup_args(p, steps=8)
    p.add_argument("--hf-steps", type=int, default=3, help="HF steps per round")
    p.add_argument("--full-rows", action="store_true", help="sid's update on G full rows per prompt "
                   "(rl.shared_prefix=false, upstream's layout) instead of one shared-prefix row per prompt")
    p.add_argument("--skip-hf", action="store_true")
    p.add_argument("--out", type=str, default="")
    add_method_args(p)
    return p.parse_args()


def setup(a: argparse.Namespace, tmp: Path) -> dict:
    """The shared set-up: tokenizer + SID tokens, catalog, RL examples, the tiny random Qwen2 saved as
    an HF folder into ``tmp`` (a scratch folder the caller made), the trie decoder and the rule +
    ranking rewards."""
    import torch
    import transformers

    torch.set_num_threads(a.threads)
    from sidcore.data.catalog import build_catalog
    from sidcore.data.minionerec import bundled_data_dir, read_csv, read_index, read_items, split_paths
    from sidcore.data.rl_tasks import build_rl_examples
    from sidcore.data.tokenizer import add_sid_tokens, load_tokenizer
    from sidcore.plugins import load_plugins

    paths = split_paths(bundled_data_dir(), "Industrial_and_Scientific")
    tok = load_tokenizer("bundled", padding_side="right")
    index = read_index(paths["index"])
    add_sid_tokens(tok, index)
    catalog = build_catalog(paths["info"], paths["index"], tok)
    n_ex = a.prompts * max(a.steps, a.hf_steps) * 2
    examples = build_rl_examples(tok, tasks=["sid_history"], train_rows=read_csv(paths["valid"])[:n_ex], index=index,
                                 items=read_items(paths["items"]), seed=0)
    eos = tok.eos_token_id
    torch.manual_seed(0)
    hcfg = transformers.Qwen2Config(vocab_size=len(tok), hidden_size=a.hidden, intermediate_size=2 * a.hidden,
                                    num_hidden_layers=a.layers, num_attention_heads=4, num_key_value_heads=2,
                                    tie_word_embeddings=True, rope_theta=1e6, eos_token_id=eos, pad_token_id=eos)
    transformers.Qwen2ForCausalLM(hcfg).save_pretrained(tmp)
    registry = load_plugins(strict=True).registry
    dspec = registry.get("decoder", "trie")
    decoder = dspec.build(dspec.config(), catalog=catalog, eos_id=eos)
    rewards = {n: registry.get("reward", n).build(registry.get("reward", n).config()) for n in ("rule", "ranking")}
    return {"tok": tok, "catalog": catalog, "examples": examples, "eos": eos, "decoder": decoder,
            "rewards": rewards}


def sid_bundle(tmp: Path, tok: Any) -> Any:
    """Fresh sid weights from the HF folder (the trainer donates its parameter buffers)."""
    from sidcore.model import load_hf
    from sidcore.model.bundle import ModelBundle
    from sidcore.model.sharding import make_mesh

    model, _ = load_hf(tmp)
    return ModelBundle(model=model, model_config=None, tokenizer=tok, token_extension=None, real_vocab=len(tok),
                       vocab_resize={}, mesh=make_mesh("auto"))


def main() -> None:
    a = parse()
    with common.scratch_dir("sid-rl-bench-") as tmp:  # the HF folder; removed with nothing else
        run(a, tmp)


def run(a: argparse.Namespace, tmp: Path) -> None:
    import torch
    import transformers

    from sidcore.rl.config import RLConfig
    from sidcore.rl.trainer import train_rl

    env = setup(a, tmp)
    tok, catalog, examples, eos = env["tok"], env["catalog"], env["examples"], env["eos"]
    decoder, rewards = env["decoder"], env["rewards"]
    b, g = a.prompts, a.generations
    method = Method.from_args(a)
    cfg = RLConfig(num_generations=g, batch_size=b * g, max_steps=a.steps, lr_schedule="constant", warmup_ratio=0.0,
                   shared_prefix=not a.full_rows)
    sid_hist: list[dict] = []

    def sid_round() -> list[float]:
        bundle = sid_bundle(tmp, tok)  # fresh weights each round
        _, trainer = train_rl(cfg, bundle=bundle, store=None, decoder=decoder, rewards=rewards, examples=examples,
                              catalog=catalog, seed=0)
        sid_hist.extend(trainer.history[1:])  # the first step compiles
        return [h["rl/step_time_sec"] for h in trainer.history[1:]]

    # ---------------------------------------------------------------- HF / PyTorch (upstream's loop)
    from sidcore.testing.hf_trie import allowed_table, upstream_trie_processor

    allowed = allowed_table(tok, catalog.sids, eos)

    policy = transformers.Qwen2ForCausalLM.from_pretrained(tmp).train()
    ref = transformers.Qwen2ForCausalLM.from_pretrained(tmp).eval()
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-5, weight_decay=0.0)
    disc = 1.0 / np.log2(np.arange(g) + 2.0)
    disc = -disc / disc.sum()
    processor = upstream_trie_processor(tok, catalog.sids, eos, allowed)
    cursor = [0]

    def hf_step() -> None:
        s = cursor[0] % a.hf_steps
        cursor[0] += 1
        batch = examples[s * b:(s + 1) * b]
        lp = max(len(e.input_ids) for e in batch)
        ids = torch.tensor([[eos] * (lp - len(e.input_ids)) + e.input_ids for e in batch])
        am = torch.tensor([[0] * (lp - len(e.input_ids)) + [1] * len(e.input_ids) for e in batch])
        gen = transformers.GenerationConfig(num_beams=g, num_return_sequences=g, length_penalty=0.0, max_new_tokens=5,
                                            do_sample=False, early_stopping=True, pad_token_id=eos, eos_token_id=eos)
        with torch.no_grad():
            out = policy.generate(input_ids=ids, attention_mask=am, generation_config=gen,
                                  logits_processor=transformers.LogitsProcessorList([processor]))
        comp = out[:, lp:]
        texts = tok.batch_decode(comp, skip_special_tokens=True)
        r = np.zeros((b, g))
        for i, e in enumerate(batch):
            hit = np.array([t.strip('\n" ') == e.target_sid for t in texts[i * g:(i + 1) * g]])
            r[i] = hit + (np.where(hit, 0.0, disc) if hit.any() else 0.0)
        rt = torch.tensor(r, dtype=torch.float32)
        adv = ((rt - rt.mean(1, keepdim=True)) / (rt.std(1, keepdim=True) + 1e-4)).reshape(-1)
        t_len = comp.shape[1]
        is_eos = comp == eos
        eos_idx = torch.full((comp.shape[0],), t_len, dtype=torch.long)
        eos_idx[is_eos.any(1)] = is_eos.int().argmax(1)[is_eos.any(1)]
        cmask = (torch.arange(t_len)[None] <= eos_idx[:, None]).int()
        full_ids = torch.cat([ids.repeat_interleave(g, 0), comp], 1)
        full_am = torch.cat([am.repeat_interleave(g, 0), cmask], 1)

        def logps(m):
            logits = m(input_ids=full_ids, attention_mask=full_am, logits_to_keep=t_len + 1).logits[:, :-1]
            return torch.gather(logits.log_softmax(-1), 2, comp[..., None])[..., 0]

        logp = logps(policy)
        with torch.no_grad():
            ref_logp = logps(ref)
        kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
        per_tok = -(torch.exp(logp - logp.detach()) * adv[:, None] - 1e-3 * kl)
        loss = ((per_tok * cmask).sum(1) / cmask.sum(1)).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.3)
        opt.step()

    def hf_round() -> list[float]:
        times = []
        for _ in range(a.hf_steps):
            t0 = time.perf_counter()
            hf_step()
            times.append(time.perf_counter() - t0)
        return times

    if not a.skip_hf:
        hf_step()  # warm-up, untimed (torch's first generate/backward initialise lazily), as sid's compile step
    sides = {"sid": sid_round} if a.skip_hf else {"sid": sid_round, "hf": hf_round}
    with method.session():
        times = method.alternate(sides)
    summary = summarize(times, reference="hf", subject="sid")
    peak = common.matmul_peak_flops()
    rows = float(np.median([h["rl/normaliser_rows"] for h in sid_hist]))
    passes = float(np.median([h["rl/vocab_passes"] for h in sid_hist]))
    vocab_flops = passes * rows * len(tok) * a.hidden * 2
    update = float(np.median([h["rl/update_time_sec"] for h in sid_hist]))
    res = {"prompts_per_step": b, "G": g, "completions_per_step": b * g, "hidden": a.hidden, "layers": a.layers,
           "vocab": len(tok), "catalog": len(catalog.sids), "threads": a.threads, "shared_prefix": not a.full_rows,
           "method": method.record, **summary,
           "sid_rollout_sec": float(np.median([h["rl/rollout_time_sec"] for h in sid_hist])),
           "sid_update_sec": update,
           "sid_reward_sec": float(np.median([h["rl/reward_time_sec"] for h in sid_hist])),
           "normaliser_rows": rows, "vocab_passes": passes, "matmul_peak_gflops": peak / 1e9,
           "update_vocab_gflop": vocab_flops / 1e9, "update_flop_bound_sec": vocab_flops / peak,
           "update_over_bound": update / (vocab_flops / peak)}
    print(json.dumps(res, indent=1))
    sid, hf = summary["sides"]["sid"], summary["sides"].get("hf")
    print(f"sid step: min {sid['min']:.3f} s, median {sid['median']:.3f} s (rollout {res['sid_rollout_sec']:.3f}, "
          f"update {update:.3f} = {res['update_over_bound']:.2f}x its FLOP bound {res['update_flop_bound_sec']:.3f} s "
          f"at {peak / 1e9:.0f} GFLOP/s)")
    if hf:
        print(f"hf step:  min {hf['min']:.3f} s, median {hf['median']:.3f} s -> sid is {summary['ratio_median']:.1f}x "
              f"(medians), {summary['ratio_min']:.1f}x (mins); {'idle' if method.record['idle'] else 'LOADED'}")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
