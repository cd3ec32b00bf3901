"""`sid index build` end to end on the bundled Industrial layout, and what consumes its output:
catalog, trie decoder, SFT tasks (3-level, variable 3/4-level and fixed 4-level indices)."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from sid_quantizers.build import build_index
from sid_quantizers.config import RqKmeansConfig
from sid_quantizers.factories import build_rq_kmeans
from sidcore.config.schema import DataConfig, TasksConfig
from sidcore.data.catalog import build_catalog
from sidcore.data.minionerec import bundled_data_dir, read_csv, read_index, read_info, read_items, split_paths
from sidcore.data.sid_index import index_stats
from sidcore.data.tasks import build_train_examples
from sidcore.data.tokenizer import add_sid_tokens
from sidcore.decoding.trie import SidTrie
from sidcore.errors import DataError

CAT = "Industrial_and_Scientific"
N_ITEMS = 3686


def embeddings(seed=0, dim=16):
    rng = np.random.default_rng(seed)
    top = rng.normal(size=(24, dim)) * 3
    return (top[rng.integers(24, size=N_ITEMS)] + rng.normal(size=(N_ITEMS, dim))).astype(np.float32)


def _build(tmp_path, dedup, sizes=(16, 8, 8), **kw):
    out = tmp_path / f"out_{dedup}"
    report = build_index(embeddings=embeddings(), data_dir=bundled_data_dir(), category=CAT, out=out,
                         quantizer=build_rq_kmeans(RqKmeansConfig(codebook_sizes=list(sizes))),
                         quantizer_name="rq_kmeans", seed=0, dedup=dedup, **kw)
    return out, report


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("builds")
    return {mode: _build(tmp, mode) for mode in ("none", "variable", "fixed")}


def _cfg(out, **tasks):
    p = split_paths(out, CAT)
    data = DataConfig(train_file=str(p["valid"]), eval_file=str(p["valid"]), test_file=str(p["test"]),
                      info_file=str(p["info"]), sid_index_path=str(p["index"]), item_meta_path=str(p["items"]))
    flags = dict.fromkeys(("sid_next_item", "sid_item_alignment", "fusion_seq_rec", "title_next_item",
                           "title_history_to_sid"), False)
    flags.update(tasks)
    return SimpleNamespace(seed=42, data=data, tasks=TasksConfig(**flags))


def test_build_writes_the_layout_with_consistent_sids(builds):
    out, report = builds["none"]
    paths = split_paths(out, CAT)
    index = read_index(paths["index"])
    assert list(index) == [str(i) for i in range(N_ITEMS)] and {len(v) for v in index.values()} == {3}
    assert report["stats"]["collision_rate"] > 0  # 1024 codes for 3686 items
    for split in ("valid", "test"):
        for row in read_csv(paths[split]):
            assert row.item_sid == "".join(index[str(row.item_id)])
            assert list(row.history_item_sid) == ["".join(index[str(i)]) for i in row.history_item_id]
    shipped = read_info(split_paths(bundled_data_dir(), CAT)["info"])
    info = read_info(paths["info"])
    assert [(e.title, e.item_id) for e in info] == [(e.title, e.item_id) for e in shipped]
    assert all(e.sid == "".join(index[e.item_id]) for e in info)
    saved = json.loads(paths["index"].with_name(f"{CAT}.build.json").read_text())
    assert saved["quantizer"] == "rq_kmeans" and saved["options"]["codebook_sizes"] == [16, 8, 8]


@pytest.mark.parametrize("mode, depths", [("variable", {3, 4}), ("fixed", {4})])
def test_dedup_builds_are_collision_free(builds, mode, depths):
    out, report = builds[mode]
    assert report["stats_quantizer"]["collision_rate"] > 0
    stats = index_stats(read_index(split_paths(out, CAT)["index"]))
    assert stats.collision_rate == 0 and set(stats.depths) == depths


@pytest.mark.parametrize("mode", ["none", "variable", "fixed"])
def test_catalog_trie_and_sft_accept_the_built_index(builds, qtok_factory, mode):
    out, _ = builds[mode]
    paths = split_paths(out, CAT)
    index = read_index(paths["index"])
    tok = qtok_factory()
    add_sid_tokens(tok, index)
    catalog = build_catalog(paths["info"], paths["index"], tok)
    depth = max(len(v) for v in index.values())
    assert catalog.token_ids.shape == (len(set("".join(v) for v in index.values())), depth)
    trie = SidTrie.from_catalog(catalog, eos_id=tok.eos_token_id)
    assert trie.num_items == catalog.token_ids.shape[0] and trie.uniform_depth == (mode != "variable")
    for row, path in zip(catalog.token_ids[:50], trie.paths()[:50]):
        real = row[row >= 0].tolist()
        assert path.tolist()[: len(real) + 2] == real + [198, tok.eos_token_id]
    cfg = _cfg(out, sid_next_item=True, sid_item_alignment=True)
    examples = build_train_examples(cfg.data, cfg.tasks, tok, seed=cfg.seed)
    targets = {tok.decode([t for t in e.labels if t >= 0]).replace("<|endoftext|>", "") for e in examples}
    titles = Counter(m.title for m in read_items(paths["items"]).values())
    items = read_items(paths["items"])
    deep = {"".join(v) + "\n" for k, v in index.items() if len(v) == 4 and titles[items[k].title] == 1}
    if mode == "none":
        assert not deep
    else:  # every 4-token SID of a uniquely titled item is a whole title2sid target (no truncation)
        assert len(deep) > 100 and deep <= targets


def test_trie_decoder_ranks_a_mixed_depth_catalog_like_brute_force():
    import jax
    import jax.numpy as jnp

    from sid_decoders.config import TrieConfig
    from sid_decoders.trie import build
    from sidcore.interfaces import SidCatalog
    from sidcore.testing.decoders import TOY_EOS, TOY_SUFFIX, ToyDecodeModel, make_prompts, path_scores

    rows = [[10, 20, 30, -1], [10, 20, 31, 40], [10, 20, 31, 41], [11, 21, 30, -1], [11, 22, 30, -1],
            [12, 20, 30, 40], [12, 20, 30, 42]]
    token_ids = np.array(rows, np.int32)
    catalog = SidCatalog(sids=tuple(str(r) for r in rows), token_ids=token_ids, suffix_ids=TOY_SUFFIX)
    model = ToyDecodeModel(64, seed=1, real_vocab_size=60)
    decoder = build(TrieConfig(), catalog=catalog, eos_id=TOY_EOS)
    assert decoder.emits_sids is False
    ids, lens = make_prompts(2, 6, seed=1)
    for fused in (True, False):
        dec = build(TrieConfig(fused_scoring=fused), catalog=catalog, eos_id=TOY_EOS)
        tokens, scores = jax.jit(lambda i, n: dec.decode(model, i, n, num_beams=len(rows)))(
            jnp.asarray(ids), jnp.asarray(lens))
        tokens, scores = np.asarray(tokens), np.asarray(scores)
        paths = np.full((len(rows), 6), -1, np.int32)
        for i, r in enumerate(rows):
            real = [t for t in r if t >= 0] + [*TOY_SUFFIX, TOY_EOS]
            paths[i, : len(real)] = real
        brute = path_scores(model, ids, lens, paths)  # [B, N], stops at -1
        order = np.argsort(-brute, axis=1, kind="stable")
        np.testing.assert_array_equal(tokens, paths[order])
        np.testing.assert_allclose(scores, np.take_along_axis(brute, order, 1), atol=1e-5)


def test_mixed_depth_predictions_become_sid_strings(qtok_factory):
    from sidcore.eval.evaluator import tokens_to_sid

    tok = qtok_factory()
    add_sid_tokens(tok, {"0": ("<a_1>", "<b_2>", "<c_3>", "<d_1>")})
    eos = tok.eos_token_id
    short = tok.convert_tokens_to_ids(["<a_1>", "<b_2>", "<c_3>"]) + [198, eos, -1]
    deep = tok.convert_tokens_to_ids(["<a_1>", "<b_2>", "<c_3>", "<d_1>"]) + [198, eos]
    assert tokens_to_sid(tok, short, None, eos) == "<a_1><b_2><c_3>"
    assert tokens_to_sid(tok, deep, None, eos) == "<a_1><b_2><c_3><d_1>"


def test_bad_embeddings_are_one_line_errors(tmp_path):
    bad = tmp_path / "e.npy"
    np.save(bad, np.zeros((10, 4), np.float32))
    with pytest.raises(DataError, match=r"e\.npy: 10 rows but category Industrial_and_Scientific has 3686"):
        build_index(embeddings=bad, data_dir=bundled_data_dir(), category=CAT, out=tmp_path / "o",
                    quantizer=build_rq_kmeans(RqKmeansConfig()))
    nan = np.zeros((N_ITEMS, 4), np.float32)
    nan[5, 1] = np.nan
    np.save(bad, nan)
    with pytest.raises(DataError, match=r"e\.npy: 1 rows hold NaN or inf"):
        build_index(embeddings=bad, data_dir=bundled_data_dir(), category=CAT, out=tmp_path / "o",
                    quantizer=build_rq_kmeans(RqKmeansConfig()))
    with pytest.raises(DataError, match=r"missing\.npy: file not found"):
        build_index(embeddings=tmp_path / "missing.npy", data_dir=bundled_data_dir(), category=CAT,
                    out=tmp_path / "o", quantizer=build_rq_kmeans(RqKmeansConfig()))
