"""`sidcore.dataprep.core` pieces that the end-to-end comparisons do not isolate."""

from __future__ import annotations

import numpy as np
import polars as pl

from sidcore.dataprep import core


def test_codes_dense_and_consistent_with_and_without_hash_collisions(monkeypatch):
    col = pl.Series(["b", "a", "b", "c", "a"])
    for collide in (False, True):
        if collide:  # every value hashes alike: the join path must take over
            monkeypatch.setattr(pl.Series, "hash", lambda self, seed=0: pl.Series([1] * len(self), dtype=pl.UInt64))
        coded, n = core.codes(col)
        assert n == 3 and sorted(set(coded.tolist())) == [0, 1, 2]
        assert coded[0] == coded[2] and coded[1] == coded[4] and len({coded[0], coded[1], coded[3]}) == 3


def test_k_core_reaches_the_fixed_point_and_window_bounds():
    # user 0: items 0,1 (x2 each); user 1: item 0 once -> with k=2, user 1 goes, then item 0 still has 2
    user = np.array([0, 0, 0, 0, 1])
    item = np.array([0, 1, 0, 1, 0])
    rows = core.k_core(user, item, np.ones(5, bool), user_k=2, item_k=2, n_users=2, n_items=2)
    assert rows.tolist() == [0, 1, 2, 3]
    ts = np.array([core.month_start(2000, 1) - 1, core.month_start(2000, 1), core.month_start(2001, 1),
                   core.month_start(2001, 1) + 1])
    assert core.window_mask(ts, core.month_start(2000, 1), core.month_start(2001, 1)).tolist() == [False, True, True, False]
    assert core.window_mask(ts, 0, core.month_start(2001, 1)).all()  # upstream: `if start and end`
    assert core.split_bounds(5) == (4, 4) and core.split_bounds(11) == (8, 9)
