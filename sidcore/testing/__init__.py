"""Public helpers for plugin authors: per-kind conformance suites.

Import the suite of your component's kind and call it from your own tests:
`sidcore.testing.optim.check_optimizer`, `sidcore.testing.decoders.check_decoder`,
`sidcore.testing.metrics.check_metric` / `check_ranking_metric`, `sidcore.testing.stores.check_store`,
`sidcore.testing.quantizers.check_quantizer`, `sidcore.testing.rewards.check_reward` / `check_hit_reward`.
Each module imports jax (or the store's client) only when imported itself.
"""

__all__ = ["decoders", "metrics", "optim", "quantizers", "rewards", "stores"]
