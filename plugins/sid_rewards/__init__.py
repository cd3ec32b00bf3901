"""Built-in RL reward components: `rule` (exact hit), `ranking` (upstream MiniOneRec's NDCG-shaped
penalty for wrong beams by rank), `prefix` (partial credit for matching leading SID levels), and
upstream's `sasrec` (logit of a frozen sequential recommender from `sid baseline`) and `semantic`
(cosine of item embeddings from `sid index embed`).

A reward maps one prompt's group of G rollouts (`sidcore.interfaces.RewardGroup`) to ``[G]``
float32 values. Listing these components imports only `attrs`; the code is in `sid_rewards.rewards` and
`sid_rewards.cf`.
"""

from __future__ import annotations

from sidcore import hookimpl
from sidcore.api import Register
from sid_rewards.config import PrefixConfig, RankingConfig, RuleConfig, SasrecConfig, SemanticConfig


@hookimpl
def register_rewards(register: Register) -> None:
    register("rule", "sid_rewards.rewards:build_rule", config=RuleConfig,
             summary="1 for a completion equal to the target SID (after stripping newlines, quotes, spaces), else 0.")
    register("ranking", "sid_rewards.rewards:build_ranking", config=RankingConfig,
             summary="Upstream ndcg_rule: a wrong beam at rank i gets -(1/log2(i+2))/D; groups without a hit get 0.")
    register("prefix", "sid_rewards.rewards:build_prefix", config=PrefixConfig,
             summary="Partial credit: weighted share of leading SID levels equal to the target's.")
    register("sasrec", "sid_rewards.cf:build_sasrec", config=SasrecConfig,
             summary="Upstream cf_reward: a frozen `sid baseline` model's logit of each completion given the history.")
    register("semantic", "sid_rewards.cf:build_semantic", config=SemanticConfig,
             summary="Upstream semantic_reward: cosine between the item embeddings of completion and target.")
