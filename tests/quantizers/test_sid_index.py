"""index.json I/O, statistics goldens, dedup modes, Sinkhorn re-assignment and the data layout."""

from __future__ import annotations

import numpy as np
import pytest

from sid_quantizers.collisions import collision_groups, scale_distances, sinkhorn_codes, sinkhorn_dedup
from sid_quantizers.layout import write_layout
from sidcore.data.minionerec import bundled_data_dir, read_index, split_paths
from sidcore.data.sid_index import codes_to_index, dedup_index, format_index, index_stats, write_index
from sidcore.errors import DataError

CAT = "Industrial_and_Scientific"
SHIPPED = split_paths(bundled_data_dir(), CAT)


@pytest.fixture(scope="module")
def shipped():
    return read_index(SHIPPED["index"])


def test_stats_golden_on_the_shipped_industrial_index(shipped):
    s = index_stats(shipped)
    assert (s.items, s.unique_sids, s.groups, s.max_group_size) == (3686, 3670, 15, 3)
    assert round(100 * s.collision_rate, 3) == 0.434
    assert s.codes_used == (48, 256, 256) and s.largest_code[0] == 247
    assert s.max_branching == (95, 47) and s.depths == {3: 3686}


def test_shipped_index_round_trips_byte_for_byte(shipped, tmp_path):
    out = write_index(tmp_path / "x.index.json", shipped)
    assert out.read_bytes() == SHIPPED["index"].read_bytes()
    assert read_index(out) == shipped


@pytest.mark.parametrize("mode", ["variable", "fixed"])
def test_dedup_modes_remove_every_collision(shipped, mode):
    out = dedup_index(shipped, mode)
    s = index_stats(out)
    assert s.collision_rate == 0 and s.unique_sids == 3686 and s.groups == 0
    groups = [g for g in collision_groups(np.array([[int(t[3:-1]) for t in v] for v in shipped.values()]))]
    members = {str(int(i)) for g in groups for i in g}
    assert len(members) == 31  # 15 groups holding 31 items
    for key, toks in out.items():
        assert toks[:3] == shipped[key]
        if mode == "variable":
            assert len(toks) == (4 if key in members else 3)
        else:
            assert len(toks) == 4 and (toks[3] == "<d_0>") == (key not in members)
    if mode == "variable":
        assert s.depths == {3: 3655, 4: 31}
    first = sorted(groups, key=lambda g: int(g[0]))[0]
    assert [out[str(int(i))][3] for i in first] == [f"<d_{r}>" for r in range(1, len(first) + 1)]


def test_dedup_rejects_mixed_depth_and_unknown_mode():
    with pytest.raises(DataError, match="uniform depth"):
        dedup_index({"0": ("<a_1>",), "1": ("<a_1>", "<b_2>")}, "fixed")
    with pytest.raises(ValueError, match="dedup mode"):
        dedup_index({"0": ("<a_1>",)}, "grid")


def test_codes_to_index_names_levels_and_offsets():
    codes = np.array([[3, 0, 7, -1], [1, 2, 3, 4]])
    idx = codes_to_index(codes, offset=1)
    assert idx == {"0": ("<a_4>", "<b_1>", "<c_8>"), "1": ("<a_2>", "<b_3>", "<c_4>", "<d_5>")}
    assert format_index(idx).startswith('{"0": ["<a_4>", "<b_1>", "<c_8>"], "1": [')


def _upstream_sinkhorn_products(d, eps, iterations):
    """The algorithm as plain float64 products (fine for eps large enough not to overflow)."""
    q = np.exp(-scale_distances(d) / eps)
    q /= q.sum()
    b, k = q.shape
    for _ in range(iterations):
        q /= q.sum(axis=1, keepdims=True)
        q /= b
        q /= q.sum(axis=0, keepdims=True)
        q /= k
    return np.argmax(q * b, axis=1)


def test_sinkhorn_codes_equal_the_product_form_and_scale_to_unit_range():
    rng = np.random.default_rng(0)
    for trial in range(20):
        d = rng.random((int(rng.integers(2, 6)), 16)) * 3
        np.testing.assert_array_equal(sinkhorn_codes(d, eps=0.05), _upstream_sinkhorn_products(d, 0.05, 50))
    s = scale_distances(d)
    assert s.max() == pytest.approx(1, abs=1e-5) and s.min() == pytest.approx(-1, abs=1e-5)
    # eps = 0.003 overflows the product form; the log form stays finite and splits the pair
    d = np.array([[0.0, 0.1] + [4.0] * 14, [0.0, 0.12] + [4.0] * 14])
    assert len(set(sinkhorn_codes(d).tolist())) == 2


def test_sinkhorn_dedup_lowers_collisions_and_keeps_prefixes():
    from sid_quantizers.kmeans import fit_residual_kmeans
    from sidcore.testing.quantizers import planted_embeddings

    x, _ = planted_embeddings(200, 8, groups=4, seed=0)
    q = fit_residual_kmeans(x, [4, 4, 32], seed=0)
    before = len(collision_groups(q.fit_codes))
    codes, rounds = sinkhorn_dedup(q, x, q.fit_codes, rounds=20)
    assert before > 0 and 1 <= rounds <= 20
    assert sum(len(g) - 1 for g in collision_groups(codes)) < sum(len(g) - 1 for g in collision_groups(q.fit_codes))
    np.testing.assert_array_equal(codes[:, :2], q.fit_codes[:, :2])


def test_layout_with_the_shipped_index_reproduces_every_file(shipped, tmp_path):
    written = write_layout(bundled_data_dir(), CAT, shipped, tmp_path)
    assert set(written) == {"index", "items", "info", "valid", "test"}
    for role, path in written.items():
        assert path.read_bytes() == SHIPPED[role].read_bytes(), role


def test_layout_rejects_an_index_missing_an_item(shipped, tmp_path):
    partial = dict(shipped)
    partial.pop("3681")
    with pytest.raises(DataError, match=r"item id 3681 is not in the new index"):
        write_layout(bundled_data_dir(), CAT, partial, tmp_path)
