"""Conformance suite for reward components (`sidcore.interfaces.Reward`).

`check_reward` holds for every reward: one float32 per completion for any group size, finite or NaN
(= not applicable), deterministic, inputs untouched, and a function of the group alone (the same
group gives the same values whatever was scored before). The toy groups carry history item ids
(``0..19``, one group without history), so history-based rewards are held too. `check_hit_reward` adds the laws of a
reward that favours the target: a group whose every completion is the target never scores below
one without any hit, and rewards stay within ``bounds``.
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np

from sidcore.interfaces import Reward, RewardGroup

__all__ = ["check_reward", "check_hit_reward", "toy_groups", "toy_sids"]


def toy_sids(n: int = 20) -> list[str]:
    """``n`` distinct 3-level SIDs sharing prefixes (``<a_i><b_j><c_k>``)."""
    return [f"<a_{i % 3}><b_{(i // 3) % 3}><c_{i}>" for i in range(n)]


def toy_groups(g: int = 8) -> list[RewardGroup]:
    """Groups of ``g`` completions: the target at rank 0, at the last rank, absent, a near miss, junk,
    then the target at rank 0 again with an empty history. Item ``i`` of the toy catalog is
    ``toy_sids()[i]``; histories are item ids below 20."""
    sids = toy_sids(max(g + 2, 4))
    target = sids[0]
    others = sids[1 : g + 1]
    scores = -np.arange(g, dtype=np.float32) - 1.0
    rows: list[list[str]] = [
        [target] + others[: g - 1],
        others[: g - 1] + [target],
        others[:g],
        [target.replace("<c_0>", "<c_99>")] + others[: g - 1],
        ["not a sid"] + others[: g - 1],
        [target] + others[: g - 1],
    ]
    return [RewardGroup(sample_id=i, target_sid=target, completions=tuple(r[:g]), scores=scores.copy(),
                        target_item="0", history_items=() if i == len(rows) - 1 else tuple(range(i + 1, i + 4)))
            for i, r in enumerate(rows)]


def _call(reward: Reward, group: RewardGroup) -> np.ndarray:
    out = reward(group)
    assert isinstance(out, np.ndarray), f"a reward must return a numpy array, got {type(out).__name__}"
    assert out.dtype == np.float32, f"a reward must return float32, got {out.dtype}"
    g = len(group.completions)
    assert out.shape == (g,), f"a reward must return shape ({g},), got {out.shape}"
    assert not np.isinf(out).any(), f"a reward must not return inf: {out}"
    return out


def check_reward(reward: Reward, *, sizes: Sequence[int] = (1, 4, 16)) -> dict[int, list[np.ndarray]]:
    """Laws every reward obeys; returns its values on `toy_groups` for each group size."""
    values: dict[int, list[np.ndarray]] = {}
    for g in sizes:
        groups = toy_groups(g)
        before = copy.deepcopy(groups)
        first = [_call(reward, grp) for grp in groups]
        for a, b in zip(groups, before):
            assert (a.completions, a.target_sid, a.history_items) == (b.completions, b.target_sid, b.history_items), \
                "a reward must not modify its group"
            np.testing.assert_array_equal(a.scores, b.scores, err_msg="a reward must not modify the scores")
        again = [_call(reward, grp) for grp in reversed(groups)][::-1]
        for x, y in zip(first, again):
            np.testing.assert_array_equal(x, y, err_msg="a reward must be deterministic and depend on its group only")
        values[g] = first
    return values


def check_hit_reward(reward: Reward, *, bounds: tuple[float, float] = (-1.0, 1.0)) -> None:
    """`check_reward` plus: all-target groups score at least no-hit groups; values within ``bounds``."""
    values = check_reward(reward)
    lo, hi = bounds
    for g, per_group in values.items():
        for v in per_group:
            finite = v[~np.isnan(v)]
            assert ((finite >= lo - 1e-6) & (finite <= hi + 1e-6)).all(), f"values {v} outside {bounds}"
        target = toy_groups(g)[0].target_sid
        all_hit = RewardGroup(sample_id=0, target_sid=target, completions=(target,) * g,
                              scores=np.zeros(g, np.float32))
        miss = toy_groups(g)[2]
        assert np.nansum(_call(reward, all_hit)) >= np.nansum(_call(reward, miss)) - 1e-6, \
            "a group of hits must not score below a group without any hit"
