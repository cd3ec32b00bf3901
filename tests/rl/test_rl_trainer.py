"""RL loop on CPU: a tiny model on the bundled Industrial data learns (mean `rule` reward and train
hit@1 rise), deterministically under a seed; a run stopped and resumed matches an uninterrupted one
bitwise; reference sync and beta=0 (no reference) paths."""

from __future__ import annotations

import collections

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import sid_decoders
import sid_rewards
import sid_stores
from sidcore.data.catalog import build_catalog
from sidcore.data.minionerec import bundled_data_dir, read_csv, read_index, read_items, split_paths
from sidcore.data.rl_tasks import build_rl_examples
from sidcore.data.tokenizer import add_sid_tokens, load_tokenizer
from sidcore.errors import ConfigError
from sidcore.interfaces import SidCatalog
from sidcore.model import Qwen2Config, Qwen2ForCausalLM
from sidcore.model.sharding import make_mesh
from sidcore.plugins import load_plugins
from sidcore.rl.config import RLConfig
from sidcore.train.checkpointing import own_resume
from sidcore.rl.trainer import train_rl
from sidcore.model.bundle import ModelBundle

PATHS = split_paths(bundled_data_dir(), "Industrial_and_Scientific")
N_ITEMS = 16




def make_world(n_items=N_ITEMS, n_rows=64):
    tok = load_tokenizer("bundled", padding_side="right")
    index = read_index(PATHS["index"])
    add_sid_tokens(tok, index)
    full = build_catalog(PATHS["info"], PATHS["index"], tok)
    rows = read_csv(PATHS["valid"])
    # a small catalog of the most frequent targets, so G beams hit often enough to learn from
    counts = collections.Counter(r.item_sid for r in rows)
    keep = sorted(counts, key=lambda s: (-counts[s], s))[:n_items]
    pos = [full.sids.index(s) for s in keep]
    catalog = SidCatalog(sids=tuple(keep), token_ids=full.token_ids[pos], suffix_ids=full.suffix_ids,
                         items_per_sid={s: full.items_per_sid[s] for s in keep})
    rows = [r for r in rows if r.item_sid in set(keep)][:n_rows]
    examples = build_rl_examples(tok, tasks=["sid_history"], train_rows=rows, index=index,
                                 items=read_items(PATHS["items"]), seed=0, catalog_sids=frozenset(keep))
    registry = load_plugins(entry_points=False, extra=[("decoders", sid_decoders), ("rewards", sid_rewards),
                                                      ("stores", sid_stores)], strict=True).registry
    spec = registry.get("decoder", "trie")
    decoder = spec.build(spec.config(), catalog=catalog, eos_id=tok.eos_token_id)
    rewards = {n: registry.get("reward", n).build(registry.get("reward", n).config()) for n in ("rule", "ranking")}
    return tok, catalog, examples, decoder, rewards, registry


@pytest.fixture(scope="module")
def world():
    return make_world()


def _bundle(tok, seed=0):
    cfg = Qwen2Config.tiny(vocab_size=len(tok), hidden_size=32, intermediate_size=64)
    model = nnx.jit(lambda: Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(seed)))()
    return ModelBundle(model=model, model_config=cfg, tokenizer=tok, token_extension=None, real_vocab=len(tok),
                       vocab_resize={}, mesh=make_mesh("auto"))


def _run(world, steps, store=None, **over):
    tok, catalog, examples, decoder, rewards, _ = world
    opts = dict(num_generations=4, batch_size=32, max_steps=steps, learning_rate=1e-2, warmup_ratio=0.0,
                lr_schedule="constant", max_grad_norm=1.0, prompt_bucket=32)
    cfg = RLConfig(**{**opts, **over})
    resume = own_resume(store, resume_fallback=False, stage="rl", settings={})  # what the job hands over
    summary, trainer = train_rl(cfg, bundle=_bundle(tok), store=store, decoder=decoder, rewards=rewards,
                                examples=examples, catalog=catalog, seed=7, resume=resume)
    return summary, trainer


@pytest.mark.slow
def test_thirty_steps_raise_rule_reward_and_hit_rate_deterministically(world):
    summary, trainer = _run(world, 30)
    h = trainer.history
    assert summary["steps"] == 30 and len(h) == 30
    first = np.mean([x["rl/reward/rule_mean"] for x in h[:10]])
    last = np.mean([x["rl/reward/rule_mean"] for x in h[-10:]])
    hit_first = np.mean([x["rl/hit@1"] for x in h[:10]])
    hit_last = np.mean([x["rl/hit@1"] for x in h[-10:]])
    assert last > 1.3 * first, (first, last)
    assert hit_last > hit_first, (hit_first, hit_last)
    assert all(np.isfinite(x["rl/kl_mean"]) and x["rl/kl_mean"] >= 0 for x in h)
    assert h[0]["rl/kl_max"] == 0.0  # step 1 rolls out with the reference itself
    for key in ("rl/reward_mean", "rl/reward/ranking_mean", "rl/zero_adv_frac", "rl/kl_p99", "rl/distinct_top1",
                "rl/rollout_time_sec", "rl/update_time_sec"):
        assert key in h[-1]


@pytest.mark.slow
def test_resume_is_bitwise_and_ref_sync_and_beta0(world, tmp_path):
    _, _, _, _, _, registry = world
    store_spec = registry.get("store", "msgpack")

    def store(name):
        return store_spec.build(store_spec.config(fsync=False), uri=str(tmp_path / name))

    opts = dict(sync_ref_model=True, ref_sync_steps=2, beta=0.05)
    _, full = _run(world, 4, store=store("full"), **opts)
    _run(world, 2, store=store("cut"), **opts)  # stopped after step 2 (its last checkpoint is step 2)
    _, resumed = _run(world, 4, store=store("cut"), **opts)
    assert len(resumed.history) == 2
    _, cut = _run(world, 2, **opts)  # same seed, no store: the same first steps (deterministic)
    assert [x["rl/loss"] for x in cut.history] == [x["rl/loss"] for x in full.history[:2]]
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    tree, meta = store("full").restore("last")
    assert meta["stage"] == "rl" and meta["step"] == 4 and "ref_params" in tree
    _, nobeta = _run(world, 1, store=store("b0"), beta=0.0)
    tree, _ = store("b0").restore("last")
    assert "ref_params" not in tree and nobeta.history[0]["rl/kl_mean"] == 0.0
    with pytest.raises(ConfigError, match="multiple"):
        _run(world, 1, batch_size=30)


@pytest.mark.slow
def test_shared_prefix_update_matches_full_rows_in_the_loop(world):
    """rl.shared_prefix on/off: the same run up to float rounding, here with the clipped multi-iteration
    ratio (old log-probs from the same layout) and sampled rollouts. Plain SGD: Adam's per-element
    normalisation would turn rounding-level gradient differences of near-zero entries into lr-sized steps."""
    tok, catalog, examples, decoder, rewards, _ = world
    cfg = dict(num_generations=4, batch_size=32, max_steps=2, warmup_ratio=0.0, prompt_bucket=32,
               num_iterations=2, rollout="sample", beta=0.05)
    runs = [train_rl(RLConfig(**cfg, shared_prefix=on), bundle=_bundle(tok), store=None, decoder=decoder,
                     rewards=rewards, examples=examples, catalog=catalog, seed=7, tx=optax.sgd(1.0))[1]
            for on in (True, False)]
    tree, full = (r.history for r in runs)
    for key in ("rl/reward_mean", "rl/hit@1"):
        assert [x[key] for x in tree] == [x[key] for x in full], key  # same rollouts
    for key in ("rl/loss", "rl/kl_mean", "rl/grad_norm", "rl/clip_frac"):
        np.testing.assert_allclose([x[key] for x in tree], [x[key] for x in full], rtol=1e-5, atol=1e-7,
                                   err_msg=key)
    assert full[-1]["rl/kl_mean"] > 1e-6 and full[-1]["rl/grad_norm"] > 0.0
    for a, b in zip(jax.tree.leaves(runs[0].params), jax.tree.leaves(runs[1].params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
