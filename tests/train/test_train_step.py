"""The train step against outside references: a plain PyTorch loop over transformers' Qwen2 (same
init, same batches, AdamW + linear warmup/decay), exact loss equality across batching policies, and
8 fake devices vs 1."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def make_examples(n, vocab, seed=0):
    from sidcore.data.encoding import Example

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        p, t = int(rng.integers(4, 20)), int(rng.integers(2, 6))
        ids = rng.integers(0, vocab, p + t).tolist()
        out.append(Example(input_ids=ids, labels=[-100] * p + ids[p:], task="toy"))
    return out


@attrs.frozen
class DataCfg:
    pad_policy: str = "buckets"
    padding_side: str = "right"
    pad_to_multiple_of: int = 8
    max_len: int = 64
    pad_buckets: tuple = (16, 32, 64)
    pack_rows_multiple: int = 0


def sid_setup(model, tx):
    import jax
    from flax import nnx

    from sidcore.model.merge import make_merge
    from sidcore.train.step import make_train_step

    gd, st = nnx.split(model)
    params = nnx.to_pure_dict(st)
    step = jax.jit(make_train_step(make_merge(gd, jax.tree.map(lambda v: v, st)), tx, real_vocab=model.vocab_size))
    return params, tx.init(params), step


@pytest.mark.torch
def test_first_10_losses_match_pytorch_loop(tmp_path):
    import optax
    import torch
    from transformers import Qwen2Config as HFConfig, Qwen2ForCausalLM as HFModel

    from sidcore.model import load_hf
    from sidcore.train.batches import collate_step
    from sidcore.train.step import make_schedule_factory

    torch.manual_seed(0)
    hf_cfg = HFConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, rope_theta=1e6, tie_word_embeddings=True)
    hf = HFModel(hf_cfg).float()
    hf.save_pretrained(tmp_path)
    model, _ = load_hf(tmp_path)
    steps, lr, warm = 10, 3e-3, 3
    sched = make_schedule_factory("warmup_linear", warmup_steps=warm, total_steps=steps)(lr)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0))
    params, opt, step = sid_setup(model, tx)
    examples = make_examples(steps * 8, 96)

    t_opt = torch.optim.AdamW(hf.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    t_sched = torch.optim.lr_scheduler.LambdaLR(
        t_opt, lambda s: s / warm if s < warm else max(0.0, (steps - s) / (steps - warm)))
    ours, theirs = [], []
    for s in range(steps):
        batch_ex = examples[s * 8 : (s + 1) * 8]
        # sid: 2 micro-batches of 4 rows, token-mean over the effective batch (upstream)
        hb = collate_step(batch_ex, micro_rows=4, n_micro=2, data_cfg=DataCfg(), pad_id=0)
        params, opt, m = step(params, opt, hb)
        ours.append(float(m["loss"]))
        # torch: dynamic right padding, HF's shifted CE summed over all label tokens / count
        L = max(len(e.input_ids) for e in batch_ex)
        ids = torch.tensor([e.input_ids + [0] * (L - len(e)) for e in batch_ex])
        att = torch.tensor([[1] * len(e) + [0] * (L - len(e)) for e in batch_ex])
        lab = torch.tensor([e.labels + [-100] * (L - len(e)) for e in batch_ex])
        logits = hf(input_ids=ids, attention_mask=att).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 96), lab[:, 1:].reshape(-1),
                                                 ignore_index=-100)
        t_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        t_opt.step()
        t_sched.step()
        theirs.append(float(loss))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    assert len({round(x, 4) for x in ours}) > 1  # parameters actually move


def test_loss_identical_across_padding_and_packing():
    import optax
    from flax import nnx

    from sidcore.model import Qwen2Config, Qwen2ForCausalLM
    from sidcore.train.batches import collate_step

    model = Qwen2ForCausalLM(Qwen2Config.tiny(vocab_size=64, hidden_size=32, num_hidden_layers=1),
                             rngs=nnx.Rngs(0))
    examples = make_examples(8, 64, seed=1)
    losses = {}
    for name, cfg in {"right": DataCfg(), "left": DataCfg(padding_side="left"), "max": DataCfg(pad_policy="max"),
                      "pack": DataCfg(pad_policy="pack"),
                      "pack3": DataCfg(pad_policy="pack", pack_rows_multiple=3)}.items():
        params, opt, step = sid_setup(model, optax.sgd(0.0))
        hb = collate_step(examples, micro_rows=4, n_micro=2, data_cfg=cfg, pad_id=0)
        _, _, m = step(params, opt, hb)
        losses[name] = (float(m["loss"]), float(m["tokens"]))
    ref = losses["right"]
    for name, (loss, tokens) in losses.items():
        assert tokens == ref[1], name
        assert abs(loss - ref[0]) < 1e-5, (name, loss, ref[0])


def test_pack_rows_multiple_rounds_rows_up_to_the_multiple():
    from sidcore.train.batches import collate_step

    examples = make_examples(40, 64, seed=2)
    pow2 = collate_step(examples, micro_rows=64, n_micro=1, data_cfg=DataCfg(pad_policy="pack"), pad_id=0)
    rows = int((pow2["segment_ids"].max(axis=-1) > 0).sum())  # rows holding any token
    assert pow2["input_ids"].shape[1] == 1 << (rows - 1).bit_length()
    for m, replicas in ((3, 1), (4, 2), (3, 2)):
        hb = collate_step(examples, micro_rows=64, n_micro=1, data_cfg=DataCfg(pad_policy="pack", pack_rows_multiple=m),
                          pad_id=0, row_multiple=replicas)
        unit = m * replicas // math.gcd(m, replicas)
        assert hb["input_ids"].shape[1] == -(-rows // unit) * unit, (m, replicas)
        assert int((hb["segment_ids"] > 0).sum()) == int((pow2["segment_ids"] > 0).sum())


@pytest.mark.slow
def test_eight_fake_devices_match_one(tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np, optax, jax
        from flax import nnx
        sys.path.insert(0, {str(ROOT / 'tests' / 'train')!r})
        from test_train_step import make_examples, DataCfg
        from sidcore.model import Qwen2Config, Qwen2ForCausalLM, make_mesh, shard_params
        from sidcore.train.batches import collate_step
        from sidcore.train.loop import put_batch
        from sidcore.model.merge import make_merge
        from sidcore.train.step import make_train_step
        mesh = make_mesh(sys.argv[1])
        model = Qwen2ForCausalLM(Qwen2Config.tiny(vocab_size=64, hidden_size=32, num_hidden_layers=2),
                                 rngs=nnx.Rngs(0))
        gd, st = nnx.split(model)
        params = shard_params(nnx.to_pure_dict(st), mesh)
        tx = optax.adamw(1e-2)
        opt = jax.jit(tx.init)(params)
        step = jax.jit(make_train_step(make_merge(gd, jax.tree.map(lambda v: v, st)), tx, real_vocab=64))
        ex = make_examples(48, 64, seed=3)
        losses = []
        for s in range(3):
            hb = collate_step(ex[s * 16:(s + 1) * 16], micro_rows=8, n_micro=2, data_cfg=DataCfg(), pad_id=0)
            params, opt, m = step(params, opt, put_batch(hb, mesh, axis=1))
            losses.append(float(m["loss"]))
        print(json.dumps(losses))
    """)
    path = tmp_path / "run.py"
    path.write_text(script)
    out = {}
    for mesh, n in (("1,1,1", 1), ("2,4,1", 8), ("1,-1,1", 8)):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}", "JAX_PLATFORMS": "cpu"}
        res = subprocess.run([sys.executable, str(path), mesh], capture_output=True, text=True, env=env,
                             timeout=600, cwd=ROOT)
        assert res.returncode == 0, res.stderr[-3000:]
        out[mesh] = json.loads(res.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out["2,4,1"], out["1,1,1"], atol=1e-5)
    np.testing.assert_allclose(out["1,-1,1"], out["1,1,1"], atol=1e-5)
