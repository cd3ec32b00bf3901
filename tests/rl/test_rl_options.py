"""Issue 22's RL options, each held against a transcription of upstream MiniOneRec on fixed inputs.

The ``_up_*`` functions below are transcriptions of upstream's code (rl.py ``rule_reward`` /
``ndcg_rule_reward``, data.py's target maps, minionerec_trainer.py ``select_completion``, ``add_gt``
and the diversity metrics) written for these tests; sid's implementations are compared with them.
"""

from __future__ import annotations

import math
from collections import Counter

import attrs
import numpy as np
import pytest

import sid_rewards  # noqa: F401  (plugin package on the path)
from sid_rewards.config import RankingConfig, RuleConfig
from sid_rewards.rewards import build_ranking, build_rule
from sidcore.data.minionerec import bundled_data_dir, read_csv, read_index, read_items, split_paths
from sidcore.data.rl_tasks import build_rl_examples, description_text
from sidcore.data.tasks import sample_like_pandas
from sidcore.interfaces import RewardGroup
from sidcore.rl.config import RLConfig
from sidcore.rl.groups import diversity_metrics, dynamic_pool_size, dynamic_selection, target_paths

PATHS = split_paths(bundled_data_dir(), "Industrial_and_Scientific")
G = 16


# ----------------------------------------------------------------------------- upstream transcriptions
def _up_rewards(completions, targets, g):
    """rl.py: rule_reward and ndcg_rule_reward over a flat list of B*G completions."""
    pen = [-1.0 / math.log2(i + 2) for i in range(g)]
    pen = [-x / sum(pen) for x in pen]
    rule = [1.0 if c.strip("\n\" ") == t.strip("\n\" ") else 0.0 for c, t in zip(completions, targets)]
    ndcg, lis, flag = [], [], False
    for i, c in enumerate(completions):
        if c.strip("\n\"") == targets[i].strip("\n\""):
            flag = True
            lis.append(0.0)
        else:
            lis.append(pen[i % g])
        if (i + 1) % g == 0:
            ndcg.extend(lis if flag else [0.0] * g)
            flag, lis = False, []
    return np.array(rule), np.array(ndcg)


def _up_select(completions, target, g):
    """minionerec_trainer.py select_completion (dynamic_sampling), on strings."""
    selected = []
    times = dict(sorted(Counter(completions).items(), key=lambda x: x[1], reverse=True))
    if target in completions:
        selected.extend([target] * min(times[target], g))
    if len(selected) == g:
        return selected
    for item in times:
        if item != target and times[item] > 0:
            selected.append(item)
            times[item] -= 1
            if len(selected) == g:
                return selected
    while len(selected) < g:
        for item in times:
            if item != target and times[item] > 0:
                selected.append(item)
                times[item] -= 1
                if len(selected) == g:
                    return selected
    return selected


def _up_maps(train_rows, index, items, th_rows, eval_rows):
    """rl.py's merged prompt2history / history2target over SidDataset, RLTitle2SidDataset,
    RLSeqTitle2SidDataset, then the eval SidDataset (targets carry upstream's trailing newline)."""
    p2h, h2t = {}, {}
    for r in train_rows:
        hist = "::".join(r.history_item_sid)
        p2h[("sid", hist)] = hist
        h2t[hist] = r.item_sid + "\n"
    title2sid, desc2sid = {}, {}
    for item_id, sids in index.items():
        if item_id in items:
            sid = sids[0] + sids[1] + sids[2]
            title2sid[items[item_id].title] = sid
            desc2sid[description_text(items[item_id].description)] = sid
    for key, sid in [*title2sid.items(), *desc2sid.items()]:
        p2h[("item", key)] = key
        h2t[key] = sid + "\n"
    for r in th_rows:
        hist = "::".join(r.history_item_title)
        p2h[("title", hist)] = hist
        h2t[hist] = r.item_sid + "\n"
    for r in eval_rows:
        hist = "::".join(r.history_item_sid)
        h2t[hist] = r.item_sid + "\n"
    return h2t


def _up_add_gt(completions, targets):
    """minionerec_trainer.py add_gt on a flat B*G list: repeat = len // distinct targets, every
    (i + 1) % repeat == 0 row becomes the target."""
    repeat = len(completions) // len(set(targets))
    return [targets[i] if (i + 1) % repeat == 0 else c for i, c in enumerate(completions)]


# ----------------------------------------------------------------------------- rewards: strip characters
def test_ranking_strips_what_upstream_ndcg_rule_strips():
    target = "<a_1><b_2><c_3>"
    comps = [f"<a_9><b_{i}><c_{i}>\n" for i in range(G)]
    comps[2] = target + " \n"  # rank 2 decodes with a space: rule hit, ndcg_rule miss
    up_rule, up_ndcg = _up_rewards(comps, [target + "\n"] * G, G)
    group = RewardGroup(sample_id=0, target_sid=target, completions=tuple(comps), scores=np.zeros(G))
    np.testing.assert_array_equal(build_rule(RuleConfig())(group), up_rule)
    np.testing.assert_allclose(build_ranking(RankingConfig())(group), up_ndcg, atol=1e-7)
    assert up_rule[2] == 1.0 and not up_ndcg.any()  # upstream: 16 zeros for the group
    old = build_ranking(RankingConfig(strip='\n" '))(group)  # sid's former default
    assert old[0] == pytest.approx(-0.163773, abs=1e-6) and old[2] == 0.0
    # a clean hit: both agree with upstream's penalties
    comps[2] = target + "\n"
    _, up_ndcg = _up_rewards(comps, [target + "\n"] * G, G)
    got = build_ranking(RankingConfig())(attrs.evolve(group, completions=tuple(comps)))
    np.testing.assert_allclose(got, up_ndcg, atol=1e-7)
    assert got[0] == pytest.approx(-0.163773, abs=1e-6) and got[15] == pytest.approx(-0.040067, abs=1e-6)


# ----------------------------------------------------------------------------- dynamic sampling, add_gt
@pytest.mark.parametrize("seed", range(6))
def test_dynamic_selection_equals_upstream_select_completion(seed):
    rng = np.random.default_rng(seed)
    pool = dynamic_pool_size(G)
    assert pool == 24
    items = [f"<a_{i}><b_0><c_0>" for i in range(rng.integers(2, 12))]
    comps = [items[int(j)] for j in rng.zipf(1.6, pool) % len(items)]
    target = items[seed % len(items)] if seed != 5 else "<a_99><b_0><c_0>"  # seed 5: target never drawn
    idx = dynamic_selection(comps, target, G)
    assert len(idx) == G and len(set(idx)) == G
    assert [comps[i] for i in idx] == _up_select(comps, target, G)
    # the target drawn more than G times keeps G copies
    assert dynamic_selection([target] * pool, target, G) == list(range(G))


def test_add_gt_and_target_paths_match_upstream():
    targets = [f"<a_{b}><b_1><c_1>" for b in range(3)]
    comps = [f"<a_9><b_{b}><c_{g}>" for b in range(3) for g in range(4)]
    ours = np.array(comps, dtype=object).reshape(3, 4)
    ours[:, -1] = targets
    assert ours.ravel().tolist() == _up_add_gt(comps, [t for t in targets for _ in range(4)])
    paths = {"s1": np.array([7, 8, 9, 198, 0]), "s2": np.array([7, 3, 198, 0])}
    np.testing.assert_array_equal(target_paths(paths, ["s2", "s1"], 5), [[7, 3, 198, 0, -1], [7, 8, 9, 198, 0]])


def test_diversity_metrics_equal_upstream():
    eos = pad = 0
    sids = np.array([["x", "x", "y", "z"], ["y", "y", "y", "y"]])
    tokens = np.array([[[5, 6, 198, 0], [5, 6, 198, 0], [5, 7, 198, 0], [8, 9, 198, 0]],
                       [[5, 7, 198, 0], [5, 7, 198, 0], [5, 7, 198, 0], [5, 7, 0, -1]]])
    got = diversity_metrics(sids, tokens, eos_id=eos, pad_id=pad)
    up_cat = np.mean([len(set(r)) / 4 for r in sids.tolist()])
    flat = [t[(t != pad) & (t >= 0)] for t in tokens.reshape(8, 4)]  # upstream drops pad (= eos) ids
    up_tok = len(set(np.concatenate(flat).tolist())) / sum(len(t) for t in flat)
    assert got["categorical_diversity"] == pytest.approx(up_cat) == 0.5
    assert got["token_diversity"] == pytest.approx(up_tok) == pytest.approx(6 / 23)
    assert got["completion_length"] == pytest.approx((7 * 4 + 3) / 8)


# ----------------------------------------------------------------------------- data options
@pytest.fixture(scope="module")
def data():
    from sidcore.data.tokenizer import add_sid_tokens, load_tokenizer

    tok = load_tokenizer("bundled", padding_side="right")
    index = read_index(PATHS["index"])
    add_sid_tokens(tok, index)
    return tok, read_csv(PATHS["valid"]), read_csv(PATHS["test"]), index, read_items(PATHS["items"])


def test_prompt_binding_is_upstreams_merged_map(data):
    tok, rows, other, index, items = data
    train = rows[:40]
    # a one-title history equal to an item's title: the same key as that title's title->SID prompt
    iid = next(i for i in index if i in items)
    one = attrs.evolve(train[0], history_item_title=(items[iid].title,))
    train = [one, *train[1:]]
    # a valid row with the history of train row 3 but another target
    ev = attrs.evolve(other[0], history_item_sid=train[3].history_item_sid)
    assert ev.item_sid != train[3].item_sid
    kw = dict(train_rows=train, index=index, items=items, seed=0, title_history_sample=len(train),
              title_history_seed=0, preamble=False)
    up = build_rl_examples(tok, bind="prompt", eval_rows=[ev], **kw)
    h2t = _up_maps(train, index, items, sample_like_pandas(train, len(train), 0), [ev])
    assert [e.target_sid + "\n" for e in up] == [h2t[e.bind_key] for e in up]
    own = build_rl_examples(tok, **kw)
    changed = {e.task for e, o in zip(up, own) if e.target_sid != o.target_sid}
    assert changed == {"sid_history", "item_to_sid"}  # the valid row's target; the one-title history's
    title_ex = next(e for e in up if e.task == "item_to_sid" and e.bind_key == items[iid].title)
    assert title_ex.target_sid == one.item_sid


def test_title_history_seed_and_item_to_sid_leak(data):
    tok, rows, _, index, items = data
    # pandas DataFrame.sample(10, random_state=0) takes RandomState(0).permutation(n)[:10] (pandas absent here)
    picked = np.random.RandomState(0).permutation(len(rows))[:10].tolist()
    ex = build_rl_examples(tok, tasks=["title_history"], train_rows=rows, index=index, items=items, seed=42,
                           title_history_sample=10, title_history_seed=0)
    assert [e.target_sid for e in ex] == [rows[i].item_sid for i in picked]
    assert RLConfig().title_history_seed == 0
    run_seed = build_rl_examples(tok, tasks=["title_history"], train_rows=rows, index=index, items=items, seed=42,
                                 title_history_sample=10)
    assert [e.target_sid for e in run_seed] != [e.target_sid for e in ex]
    leak = build_rl_examples(tok, tasks=["item_to_sid"], train_rows=[], index=index, items=items, seed=0,
                             preamble=False, leak=True)
    text = tok.decode(leak[0].input_ids)
    assert text == f"### User Input: \n{leak[0].input_text}\n\n### Response:\n{leak[0].target_sid}"
    clean = build_rl_examples(tok, tasks=["item_to_sid"], train_rows=[], index=index, items=items, seed=0,
                              preamble=False)
    assert tok.decode(clean[0].input_ids).endswith("### Response:\n")


def test_dynamic_sampling_needs_sampled_rollouts():
    with pytest.raises(ValueError, match="rollout=sample"):
        RLConfig(dynamic_sampling=True)
    RLConfig(dynamic_sampling=True, rollout="sample")


def test_prompt_truncation_keeps_the_last_tokens_as_upstream(data):
    """Upstream: ``prompt_ids[:, -max_prompt_length:]`` on left-padded rows = the last N real tokens."""
    tok, rows, _, index, items = data
    kw = dict(tasks=["title_history"], train_rows=rows[:5], index=index, items=items, seed=0, title_history_sample=5)
    full = build_rl_examples(tok, **kw)
    cut = build_rl_examples(tok, max_len=40, **kw)
    assert max(len(e.input_ids) for e in full) > 40
    for f, c in zip(full, cut):
        padded = [tok.pad_token_id] * (200 - len(f.input_ids)) + f.input_ids  # left-padded like upstream
        assert c.input_ids == [t for t in padded[-40:]][-len(c.input_ids):] == f.input_ids[-40:]
