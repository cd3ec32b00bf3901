"""Weighted combination of reward components over the groups of one step (host side, numpy).

A reward component (`sidcore.interfaces.Reward`) scores one `RewardGroup`; the kernel checks its
output (``[G]`` floats; NaN means "not applicable" and counts as 0 in the total, as TRL does) and
sums the components with their weights.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from sidcore.errors import TrainingError
from sidcore.interfaces import Reward, RewardGroup

__all__ = ["combine_rewards", "score_groups"]


def _checked(name: str, reward: Reward, group: RewardGroup) -> np.ndarray:
    g = len(group.completions)
    out = np.asarray(reward(group), dtype=np.float32)
    if out.shape != (g,):
        raise TrainingError(f"reward '{name}' returned shape {out.shape} for a group of {g} completions "
                            f"(expected ({g},))")
    if np.isinf(out).any():
        raise TrainingError(f"reward '{name}' returned an infinite value (sample {group.sample_id})")
    return out


def combine_rewards(
    rewards: Mapping[str, Reward], weights: Mapping[str, float], group: RewardGroup
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``total [G] = sum_k weights[k] * rewards[k](group)`` (NaN entries count 0) and each reward's ``[G]``."""
    per = {name: _checked(name, fn, group) for name, fn in rewards.items()}
    total = np.zeros(len(group.completions), np.float32)
    for name, values in per.items():
        total += np.float32(weights.get(name, 1.0)) * np.nan_to_num(values, nan=0.0)
    return total, per


def score_groups(
    rewards: Mapping[str, Reward], weights: Mapping[str, float], groups: Sequence[RewardGroup]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`combine_rewards` over ``B`` groups: ``(total [B, G], {name: [B, G]})``."""
    totals, per = [], {name: [] for name in rewards}
    for group in groups:
        t, p = combine_rewards(rewards, weights, group)
        totals.append(t)
        for name, v in p.items():
            per[name].append(v)
    return np.stack(totals), {name: np.stack(v) for name, v in per.items()}
