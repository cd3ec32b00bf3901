"""Reward functions of the built-in components (numpy, host side, vectorised over the group).

All three compare *strings* after ``str.strip(cfg.strip)``, like upstream's ``rule_reward``: a
completion is the decoded SID text (``"<a_1><b_2><c_3>"``, possibly with its trailing newline).
"""

from __future__ import annotations

import re

import attrs
import numpy as np

from sidcore.api import ConfigError
from sidcore.api import RewardGroup
from sid_rewards.config import PrefixConfig, RankingConfig, RuleConfig

__all__ = ["RuleReward", "RankingReward", "PrefixReward", "build_rule", "build_ranking", "build_prefix",
           "rank_discounts"]

_LEVEL = re.compile(r"<[A-Za-z]+_\d+>")


def _hits(group: RewardGroup, strip: str) -> np.ndarray:
    target = group.target_sid.strip(strip)
    return np.array([c.strip(strip) == target for c in group.completions], dtype=bool)  # [G]


def rank_discounts(g: int) -> np.ndarray:
    """``[G]`` upstream ndcg_rule penalties ``-(1 / log2(i + 2)) / D`` with ``D = sum_j 1 / log2(j + 2)``."""
    disc = 1.0 / np.log2(np.arange(g, dtype=np.float64) + 2.0)
    return -(disc / disc.sum())


@attrs.frozen(kw_only=True)
class RuleReward:
    strip: str

    def __call__(self, group: RewardGroup) -> np.ndarray:
        return _hits(group, self.strip).astype(np.float32)


@attrs.frozen(kw_only=True)
class RankingReward:
    strip: str
    no_hit: str = "zeros"

    def __call__(self, group: RewardGroup) -> np.ndarray:
        hits = _hits(group, self.strip)
        if not hits.any() and self.no_hit == "zeros":
            return np.zeros(hits.shape, np.float32)
        return np.where(hits, 0.0, rank_discounts(hits.size)).astype(np.float32)


@attrs.frozen(kw_only=True)
class PrefixReward:
    strip: str
    level_weights: tuple[float, ...] | None = None

    def __call__(self, group: RewardGroup) -> np.ndarray:
        target = _LEVEL.findall(group.target_sid.strip(self.strip))
        depth = len(target)
        if depth == 0:
            return np.zeros(len(group.completions), np.float32)
        if self.level_weights is None:
            w = np.ones(depth)
        elif len(self.level_weights) < depth:
            raise ConfigError(f"reward 'prefix': level_weights has {len(self.level_weights)} entries but the "
                              f"target {group.target_sid} has {depth} levels")
        else:
            w = np.asarray(self.level_weights[:depth], np.float64)
        cum = np.concatenate([[0.0], np.cumsum(w)]) / w.sum()  # [D + 1] credit for n matched levels
        out = np.zeros(len(group.completions), np.float64)
        for i, text in enumerate(group.completions):
            text = text.strip(self.strip)
            levels = _LEVEL.findall(text)
            if "".join(levels) != text:  # not a SID at all
                continue
            if levels == target:
                out[i] = 1.0
                continue
            n = 0
            while n < min(depth, len(levels)) and levels[n] == target[n]:
                n += 1
            out[i] = cum[min(n, depth - 1)]  # only the exact SID earns full credit
        return out.astype(np.float32)


def build_rule(cfg: RuleConfig) -> RuleReward:
    return RuleReward(strip=cfg.strip)


def build_ranking(cfg: RankingConfig) -> RankingReward:
    return RankingReward(strip=cfg.strip, no_hit=cfg.no_hit)


def build_prefix(cfg: PrefixConfig) -> PrefixReward:
    weights = None if cfg.level_weights is None else tuple(float(w) for w in cfg.level_weights)
    return PrefixReward(strip=cfg.strip, level_weights=weights)
