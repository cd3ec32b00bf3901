"""Issue 22's step-shape options in the RL loop on the tiny model: gradient accumulation equals the
unsplit step (both aggregations, the clipped ratio, completions of different lengths); a run with
dynamic_sampling + add_gt + accumulation + the valid-split RL eval; beam temperature scales the
scores only; sample order."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from test_rl_trainer import _bundle, make_world

from sidcore.errors import ConfigError
from sidcore.model.merge import make_merge
from sidcore.rl.config import RLConfig
from sidcore.rl.step import make_update_fn
from sidcore.rl.trainer import train_rl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.mark.parametrize("aggregation", ["sequence-mean-token-mean", "dapo"])
def test_gradient_accumulation_equals_the_unsplit_update(world, aggregation):
    tok, catalog, examples, *_ = world
    bundle = _bundle(tok)
    gd, st = nnx.split(bundle.model)
    params = nnx.to_pure_dict(st)
    merge = make_merge(gd, st)
    b, g = 8, 4
    rng = np.random.default_rng(0)
    lens = np.array([len(e.input_ids) for e in examples[:b]], np.int32)
    ids = np.full((b, int(lens.max()) + 3), tok.pad_token_id, np.int32)
    for i, e in enumerate(examples[:b]):
        ids[i, : lens[i]] = e.input_ids
    paths = np.array([list(row) + [*catalog.suffix_ids, tok.eos_token_id] for row in catalog.token_ids], np.int32)
    tokens = paths[rng.integers(0, len(paths), (b, g))]  # [B, G, T]
    tokens[0, 1, 1] = tok.eos_token_id  # early EOS: rows of different lengths (dapo weights differ)
    tokens[5, :, 2] = tok.eos_token_id
    adv = rng.normal(size=(b, g)).astype(np.float32)
    ref = jax.tree.map(lambda x: x * 1.01, params)
    # old log-probs near the tiny model's (~log(1 / vocab)), so ratios sit around 1 and some are clipped
    old = (-np.log(len(tok)) + 0.2 * rng.normal(size=(b * g, tokens.shape[-1]))).astype(np.float32)
    tx = optax.sgd(1e4)  # a step far above the float32 rounding of the parameters
    out, modes = {}, (True,) if aggregation == "dapo" else (False,)  # dapo with the clipped ratio (old logps)
    for k in (1, 4):
        cfg = RLConfig(num_generations=g, batch_size=b * g, beta=0.05, loss_aggregation=aggregation,
                       gradient_accumulation_steps=k)
        update = jax.jit(make_update_fn(merge, tx, cfg, real_vocab=bundle.real_vocab, pad_id=tok.pad_token_id,
                                        eos_id=tok.eos_token_id, shared_prefix=True))
        for clipped in modes:
            p, _, m = update(params, tx.init(params), ref, ids, lens, tokens, adv, old if clipped else None)
            out[k, clipped] = (p, {n: np.asarray(v) for n, v in m.items()})
    step = lambda p: [np.asarray(a) - np.asarray(b) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(params))]
    for clipped in modes:
        p1, m1 = out[1, clipped]
        assert abs(float(m1["loss"])) > 1e-3 and float(m1["grad_norm"]) > 0.1
        if clipped:
            assert 0.0 < float(m1["clip_frac"]) < 1.0
            np.testing.assert_allclose(out[4, clipped][1]["clip_frac"], m1["clip_frac"], rtol=1e-5)
        pk, mk = out[4, clipped]
        np.testing.assert_allclose(mk["loss"], m1["loss"], rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(mk["grad_norm"], m1["grad_norm"], rtol=1e-4)
        np.testing.assert_allclose(mk["kl_seq"], m1["kl_seq"], rtol=1e-5, atol=1e-8)  # rows in step order
        g1, gk = step(p1), step(pk)  # sgd: the applied step is -lr * gradient
        scale = max(float(np.abs(x).max()) for x in g1)
        for a, c in zip(g1, gk):
            np.testing.assert_allclose(c, a, rtol=1e-3, atol=1e-4 * scale)


class _Log:
    def __init__(self):
        self.rows, self.evals = [], []

    def start(self, **_):
        pass

    def write(self, step, values):
        self.rows.append((step, values))

    def eval_step(self, step, values):
        self.evals.append((step, values))


def test_dynamic_sampling_add_gt_accumulation_and_rl_eval_run(world):
    tok, catalog, examples, decoder, rewards, _ = world
    log = _Log()
    cfg = RLConfig(num_generations=4, batch_size=32, max_steps=2, learning_rate=1e-2, warmup_ratio=0.0,
                   prompt_bucket=32, rollout="sample", dynamic_sampling=True, add_gt=True,
                   gradient_accumulation_steps=2, eval_steps=0.5)
    summary, trainer = train_rl(cfg, bundle=_bundle(tok), store=None, decoder=decoder, rewards=rewards,
                                examples=examples[8:], catalog=catalog, logger=log, seed=3,
                                eval_examples=examples[:11])
    h = trainer.history
    assert summary["steps"] == 2 and all(x["rl/hit@G"] == 1.0 for x in h)  # add_gt: every group holds its target
    assert all(x["rl/completion_length"] == 5.0 for x in h)  # 3 SID levels, "\n", EOS
    assert all(0 < x["rl/categorical_diversity"] <= 1 and 0 < x["rl/token_diversity"] < 1 for x in h)
    assert all(np.isfinite(x["rl/loss"]) and x["rl/grad_norm"] > 0 for x in h)
    assert [s for s, _ in log.evals] == [1, 2]  # eval_steps 0.5 of 2 steps: every step
    ev = log.evals[-1][1]
    for key in ("eval/loss", "eval/reward", "eval/reward_std", "eval/rewards/rule", "eval/rewards/ranking",
                "eval/kl", "eval/categorical_diversity", "eval/token_diversity", "eval/completion_length"):
        assert np.isfinite(ev[key]), key
    assert ev["eval/rewards/rule"] >= 1 / 4  # add_gt also shapes the eval groups, as upstream's prediction_step
    with pytest.raises(ConfigError, match="does not divide"):
        train_rl(RLConfig(num_generations=4, batch_size=32, max_steps=1, gradient_accumulation_steps=3),
                 bundle=_bundle(tok), store=None, decoder=decoder, rewards=rewards, examples=examples,
                 catalog=catalog)


def test_beam_temperature_scales_scores_only_and_sample_order(world):
    tok, catalog, examples, decoder, rewards, _ = world
    seen = {}

    def score(group):
        seen.setdefault(id(seen), []).append(np.asarray(group.scores))
        return np.asarray(group.scores, np.float32)

    runs = {}
    for t in (1.0, 2.0):
        cfg = RLConfig(num_generations=4, batch_size=16, max_steps=1, warmup_ratio=0.0, prompt_bucket=32,
                       temperature=t, rewards=[{"name": "rule"}, {"name": "ranking"}, {"name": "score", "weight": 0}])
        runs[t] = train_rl(cfg, bundle=_bundle(tok), store=None, decoder=decoder, examples=examples,
                           rewards={**rewards, "score": score}, catalog=catalog, seed=1)[1].history[0]
    assert runs[1.0]["rl/reward/rule_mean"] == runs[2.0]["rl/reward/rule_mean"]  # same beams
    assert runs[1.0]["rl/loss"] == runs[2.0]["rl/loss"]
    np.testing.assert_allclose(runs[2.0]["rl/reward/score_mean"], runs[1.0]["rl/reward/score_mean"] / 2, rtol=1e-6)
    # sample order: generation keeps the draw order, logprob sorts the same draws best first
    from sidcore.rl.trainer import rollout_decoder

    gen = rollout_decoder(RLConfig(rollout="sample", sample_order="generation"), decoder, catalog, tok.eos_token_id)
    srt = rollout_decoder(RLConfig(rollout="sample"), decoder, catalog, tok.eos_token_id)
    assert not gen.sort and srt.sort
