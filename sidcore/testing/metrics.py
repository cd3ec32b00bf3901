"""Conformance suite for metric components (`sidcore.interfaces.Metric`).

`check_metric` holds for every metric (plain float dict, deterministic, inputs untouched, order of
samples irrelevant); `check_ranking_metric` adds the ranking laws (perfect ranking -> 1, a miss
-> 0, values in [0, 1], moving the hit later never raises a value). A metric whose
``target_kind`` attribute is ``"item"`` is fed item ids as targets, others SID strings.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import numpy as np

from sidcore.interfaces import Metric, SidCatalog

__all__ = ["check_metric", "check_ranking_metric", "toy_catalog"]


def toy_catalog() -> SidCatalog:
    """Six 3-level SIDs; ``<a_1><b_1><c_1>`` is a collision shared by items ``i1`` and ``i1b``."""
    levels = [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0), (1, 1, 1), (2, 0, 0)]
    sids = tuple(f"<a_{a}><b_{b}><c_{c}>" for a, b, c in levels)
    token_ids = np.array([[10 + a, 20 + b, 30 + c] for a, b, c in levels], np.int32)  # [N, 3]
    items = {sid: (f"i{n}",) for n, sid in enumerate(sids)}
    items[sids[1]] = ("i1", "i1b")
    return SidCatalog(sids=sids, token_ids=token_ids, suffix_ids=(198,), items_per_sid=items)


def _target(metric: Any, catalog: SidCatalog, sid: str) -> str:
    if getattr(metric, "target_kind", "sid") == "item":
        return catalog.items_per_sid[sid][0]
    return sid


def _call(
    metric: Metric, preds: Sequence[Sequence[str]], targets: Sequence[str], catalog: SidCatalog
) -> dict:
    out = metric(preds, targets, catalog=catalog)
    assert isinstance(out, dict) and out, f"a metric must return a non-empty dict, got {out!r}"
    for key, value in out.items():
        assert isinstance(key, str) and key, f"metric keys must be non-empty strings, got {key!r}"
        assert isinstance(value, float) and math.isfinite(value), (
            f"{key}: expected a finite float, got {value!r}")
    return out


def _rotated(catalog: SidCatalog, hit_at: Sequence[int | None]) -> tuple[list[list[str]], list[str]]:
    """One sample per entry: 5 predictions, the target SID at `hit_at[i]` (None: absent)."""
    sids = list(catalog.sids)
    preds, targets = [], []
    for i, pos in enumerate(hit_at):
        target = sids[i % len(sids)]
        others = [s for s in sids if s != target][:5]
        if pos is not None:
            others.insert(pos, target)
        preds.append(others[:5])
        targets.append(target)
    return preds, targets


def check_metric(metric: Metric, *, catalog: SidCatalog | None = None) -> dict[str, float]:
    """Laws every metric obeys; returns the metric's values on a small mixed table."""
    catalog = catalog or toy_catalog()
    preds, sid_targets = _rotated(catalog, [0, 2, None, 1, 4, None])
    targets = [_target(metric, catalog, t) for t in sid_targets]
    preds_before, targets_before = copy.deepcopy(preds), list(targets)
    first = _call(metric, preds, targets, catalog)
    assert preds == preds_before and targets == targets_before, "a metric must not modify its inputs"
    assert _call(metric, preds, targets, catalog) == first, "a metric must be deterministic"
    order = [3, 0, 5, 1, 4, 2]
    shuffled = _call(metric, [preds[i] for i in order], [targets[i] for i in order], catalog)
    assert shuffled.keys() == first.keys(), "the keys must not depend on the sample order"
    for key in first:
        assert math.isclose(shuffled[key], first[key], rel_tol=1e-12, abs_tol=1e-12), (
            f"{key}: the value must not depend on the sample order")
    return first


def check_ranking_metric(metric: Metric, *, catalog: SidCatalog | None = None) -> None:
    """`check_metric` plus: perfect -> 1 (within 1e-12), miss -> 0, values in [0, 1], and a hit
    moved to a later rank never scores higher."""
    catalog = catalog or toy_catalog()
    check_metric(metric, catalog=catalog)

    def run(hit_at: Sequence[int | None]) -> dict[str, float]:
        preds, sid_targets = _rotated(catalog, hit_at)
        return _call(metric, preds, [_target(metric, catalog, t) for t in sid_targets], catalog)

    perfect = run([0] * 6)
    # calc.py-exact NDCG (sum of 1/ln 2, then / n / (1/ln 2)) may land an ulp away from 1.
    assert all(math.isclose(v, 1.0, abs_tol=1e-12) for v in perfect.values()), (
        f"perfect ranking must score 1 everywhere: {perfect}")
    miss = run([None] * 6)
    assert all(v == 0.0 for v in miss.values()), f"a miss must score 0 everywhere: {miss}"
    previous = perfect
    for pos in (1, 2, 3, 4, None):
        now = run([pos] * 6)
        for key, value in now.items():
            assert 0.0 <= value <= 1.0 + 1e-12, f"{key} = {value} outside [0, 1]"
            assert value <= previous[key] + 1e-12, (
                f"{key} rose from {previous[key]} to {value} as the hit moved down")
        previous = now
