"""RL data (upstream rl.py prompts, binding) and rollouts: G beams equal HF ``generate`` with a
MiniOneRec-style trie processor on real Industrial RL prompts; the trie sampler; batch checks."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from sidcore.data.minionerec import bundled_data_dir, read_csv, read_index, read_items, split_paths
from sidcore.data.rl_tasks import build_rl_examples, description_text
from sidcore.errors import ConfigError
from sidcore.rl.rollout import check_group_batch

CAT = "Industrial_and_Scientific"
PATHS = split_paths(bundled_data_dir(), CAT)
G = 16


@pytest.fixture(scope="module")
def tok():
    from sidcore.data.tokenizer import add_sid_tokens, load_tokenizer

    t = load_tokenizer("bundled", padding_side="right")
    add_sid_tokens(t, read_index(PATHS["index"]))
    return t


@pytest.fixture(scope="module")
def sources():
    return read_csv(PATHS["valid"]), read_index(PATHS["index"]), read_items(PATHS["items"])


def test_rl_prompts_preamble_option_and_counts(tok, sources):
    rows, index, items = sources
    ex = build_rl_examples(tok, train_rows=rows[:50], index=index, items=items, seed=42, title_history_sample=20)
    tasks = [e.task for e in ex]
    assert tasks.count("sid_history") == 50 and tasks.count("title_history") == 20
    n_titles = len({items[i].title for i in index if i in items})
    n_desc = len({description_text(items[i].description) for i in index if i in items})
    assert tasks.count("item_to_sid") == n_titles + n_desc
    assert [e.sample_id for e in ex] == list(range(len(ex)))
    text = tok.decode(ex[0].input_ids)
    assert text.startswith("Below is an instruction") and text.endswith("### Response:\n")
    bare = build_rl_examples(tok, tasks=["sid_history"], train_rows=rows[:3], index=index, items=items, seed=42,
                             preamble=False)
    assert tok.decode(bare[0].input_ids) == ("### User Input: \nThe user has interacted with items "
                                              + ", ".join(rows[0].history_item_sid)
                                              + " in chronological order. Can you predict the next possible item "
                                              "that the user may expect?\n\n### Response:\n")
    assert description_text("['first', 'second']") == "first"


def test_binding_by_sample_id_vs_upstream_prompt_binding(tok, sources):
    rows, index, items = sources
    a, b = rows[0], rows[1]
    clash = [a, attrs.evolve(b, history_item_sid=a.history_item_sid)]  # same history, other target
    assert clash[1].item_sid != a.item_sid
    ours = build_rl_examples(tok, tasks=["sid_history"], train_rows=clash, index=index, items=items, seed=0)
    assert [e.target_sid for e in ours] == [a.item_sid, b.item_sid]
    up = build_rl_examples(tok, tasks=["sid_history"], train_rows=clash, index=index, items=items, seed=0,
                           bind="prompt")
    assert [e.target_sid for e in up] == [b.item_sid, b.item_sid]  # last write wins
    with pytest.raises(ConfigError):
        build_rl_examples(tok, tasks=["nope"], train_rows=rows, index=index, items=items, seed=0)


def test_batches_not_divisible_by_g_are_refused():
    assert check_group_batch(64, 16, 100) == 4
    with pytest.raises(ConfigError, match="not a multiple"):
        check_group_batch(60, 16, 100)
    with pytest.raises(ConfigError, match="catalog"):
        check_group_batch(32, 32, 20)


@pytest.mark.torch
@pytest.mark.slow
def test_beam_rollout_matches_hf_generate_and_teacher_forced_logps(tok, sources, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import jax
    import jax.numpy as jnp
    from flax import nnx

    import sid_decoders
    from sidcore.data.catalog import build_catalog
    from sidcore.decoding.trie import SidTrie
    from sidcore.model import load_hf
    from sidcore.plugins import load_plugins
    from sidcore.rl.loss import completion_batch, token_logps
    from sidcore.rl.rollout import TrieSampler, make_rollout_fn, sids_from_tokens
    from sidcore.model.merge import make_merge

    rows, index, items = sources
    ex = build_rl_examples(tok, tasks=["sid_history"], train_rows=rows[:6], index=index, items=items, seed=0)
    eos = tok.eos_token_id
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                   rope_theta=1e6, initializer_range=0.5, eos_token_id=eos, pad_token_id=eos)
    hf = transformers.Qwen2ForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path)
    catalog = build_catalog(PATHS["info"], PATHS["index"], tok)

    from sidcore.testing.hf_trie import allowed_table, upstream_trie_processor

    table = allowed_table(tok, catalog.sids, eos)

    hf_sids, hf_scores = [], []
    for e in ex:
        gen = transformers.GenerationConfig(num_beams=G, num_return_sequences=G, length_penalty=0.0, max_new_tokens=5,
                                            do_sample=False, early_stopping=True, pad_token_id=eos, eos_token_id=eos,
                                            return_dict_in_generate=True, output_scores=True)
        with torch.no_grad():
            out = hf.generate(input_ids=torch.tensor([e.input_ids]), generation_config=gen,
                              logits_processor=transformers.LogitsProcessorList(
                                  [upstream_trie_processor(tok, catalog.sids, eos, table)]))
        new = out.sequences[:, len(e.input_ids):]
        hf_sids.append([tok.decode(s, skip_special_tokens=True).strip() for s in new])
        hf_scores.append(out.sequences_scores.numpy())

    registry = load_plugins(entry_points=False, extra=[("decoders", sid_decoders)]).registry
    spec = registry.get("decoder", "trie")
    decoder = spec.build(spec.config(), catalog=catalog, eos_id=eos)
    model, _ = load_hf(tmp_path)
    gd, st = nnx.split(model)
    merge = make_merge(gd, st)
    params = nnx.to_pure_dict(st)
    lp = max(len(e.input_ids) for e in ex)
    ids = np.full((len(ex), lp), eos, np.int32)
    for i, e in enumerate(ex):
        ids[i, : len(e.input_ids)] = e.input_ids
    lengths = np.array([len(e.input_ids) for e in ex], np.int32)
    rollout = jax.jit(make_rollout_fn(merge, real_vocab=len(tok), decoder=decoder, num_generations=G))
    tokens, scores = rollout(params, ids, lengths, jax.random.PRNGKey(0))
    level_strings = np.array(tok.convert_ids_to_tokens(list(range(len(tok)))), dtype=object)
    level_strings = np.where(np.char.startswith(level_strings.astype(str), "<"), level_strings, "").astype(str)
    ours = sids_from_tokens(np.asarray(tokens), level_strings, depth=3)
    for i in range(len(ex)):
        assert list(ours[i]) == hf_sids[i], f"prompt {i}"
        np.testing.assert_allclose(np.asarray(scores[i]), hf_scores[i], rtol=1e-5, atol=1e-4)
    # the loss's teacher-forced log-probs sum to the rollout's sequence scores
    batch = completion_batch(jnp.asarray(ids), jnp.asarray(lengths), tokens, pad_id=eos, eos_id=eos)
    seq = jax.jit(lambda p, b: token_logps(merge(p), b, len(tok)))(params, batch).sum(-1)
    np.testing.assert_allclose(np.asarray(seq).reshape(len(ex), G), np.asarray(scores), rtol=1e-5, atol=1e-4)
    # the decoder's per-token log-probs (what the RL update reuses): same beams, each token's
    # teacher-forced log-prob, summing to the score
    with_lp = jax.jit(make_rollout_fn(merge, real_vocab=len(tok), decoder=decoder, num_generations=G,
                                      token_logps=True))
    tokens2, scores2, token_lp = with_lp(params, ids, lengths, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(tokens2), np.asarray(tokens))
    np.testing.assert_array_equal(np.asarray(scores2), np.asarray(scores))
    np.testing.assert_allclose(np.asarray(token_lp).sum(-1), np.asarray(scores), rtol=1e-6, atol=1e-5)
    per_tok = jax.jit(lambda p, b: token_logps(merge(p), b, len(tok)))(params, batch)
    np.testing.assert_allclose(np.asarray(token_lp).reshape(per_tok.shape), np.asarray(per_tok), rtol=1e-5,
                               atol=1e-4)
    assert float(np.abs(np.asarray(token_lp)).min()) > 0.0  # every position is a real, scored token

    sampler = TrieSampler(trie=SidTrie.from_catalog(catalog, eos_id=eos))
    sample = jax.jit(make_rollout_fn(merge, real_vocab=len(tok), decoder=sampler, num_generations=G))
    t1, s1 = sample(params, ids, lengths, jax.random.PRNGKey(1))
    t2, s2 = sample(params, ids, lengths, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(np.asarray(t1), np.asarray(t2))
    assert np.all(np.diff(np.asarray(s1), axis=1) <= 0)  # best first
    valid = set(catalog.sids)
    assert all(s in valid for s in sids_from_tokens(np.asarray(t1), level_strings, 3).ravel())
    assert np.all(np.asarray(t1)[..., -1] == eos)
    batch = completion_batch(jnp.asarray(ids), jnp.asarray(lengths), t1, pad_id=eos, eos_id=eos)
    seq = jax.jit(lambda p, b: token_logps(merge(p), b, len(tok)))(params, batch).sum(-1)
    np.testing.assert_allclose(np.asarray(seq).reshape(len(ex), G), np.asarray(s1), rtol=1e-5, atol=1e-4)
    # rl.sample_order=generation (upstream): the same draws in draw order; sorting them gives the default's
    raw = jax.jit(make_rollout_fn(merge, real_vocab=len(tok), decoder=attrs.evolve(sampler, sort=False),
                                  num_generations=G))
    t3, s3 = (np.asarray(x) for x in raw(params, ids, lengths, jax.random.PRNGKey(1)))
    order = np.argsort(-s3, axis=1, kind="stable")
    np.testing.assert_array_equal(np.take_along_axis(t3, order[..., None], axis=1), np.asarray(t1))
    assert np.any(np.diff(s3, axis=1) > 0)  # not already sorted
