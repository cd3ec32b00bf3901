"""Reward and advantage goldens (rl-and-sid.md, acceptance tests RL 1-2, 6) and reward conformance."""

from __future__ import annotations

import numpy as np
import pytest

import sid_rewards
from sidcore.errors import ConfigError, SidError, TrainingError
from sidcore.interfaces import RewardGroup
from sidcore.plugins import load_plugins
from sidcore.rl.advantages import compute_advantages, zero_advantage_fraction
from sidcore.rl.rewards import combine_rewards, score_groups
from sidcore.testing.rewards import check_hit_reward, check_reward, toy_sids

G = 16
SIDS = toy_sids(G + 1)
TARGET = SIDS[0]


@pytest.fixture(scope="module")
def registry():
    return load_plugins(entry_points=False, extra=[("rewards", sid_rewards)], strict=True).registry


def _build(registry, name, **options):
    spec = registry.get("reward", name)
    return spec.build(spec.config(**options))


def _group(hit_at: int | None, target=TARGET, sample_id=0) -> RewardGroup:
    others = [s for s in SIDS if s != target][: G - (hit_at is not None)]
    if hit_at is not None:
        others.insert(hit_at, target + "\n")  # completions keep their newline; rule strips it
    return RewardGroup(sample_id=sample_id, target_sid=target, completions=tuple(others),
                       scores=-np.arange(G, dtype=np.float32))


def _ranking_rule(registry, hit_at):
    rewards = {"rule": _build(registry, "rule"), "ranking": _build(registry, "ranking")}
    return combine_rewards(rewards, {"rule": 1.0, "ranking": 1.0}, _group(hit_at))


def test_rule_plus_ranking_golden_hit_at_rank0(registry):
    total, per = _ranking_rule(registry, 0)
    assert total.dtype == np.float32 and total.shape == (G,)
    assert total[0] == 1.0
    np.testing.assert_allclose(total[[1, 2, 15]], [-0.10333, -0.08189, -0.04007], atol=5e-6)
    d = sum(1 / np.log2(j + 2) for j in range(G))
    np.testing.assert_allclose(d, 6.105999, atol=1e-6)
    np.testing.assert_allclose(total[1:], [-(1 / np.log2(i + 2)) / d for i in range(1, G)], rtol=1e-6)
    np.testing.assert_array_equal(per["rule"], np.eye(G, dtype=np.float32)[0])


def test_no_hit_gives_zeros_upstream_and_penalty_option(registry):
    total, _ = _ranking_rule(registry, None)
    np.testing.assert_array_equal(total, np.zeros(G, np.float32))
    pen = _build(registry, "ranking", no_hit="penalty")(_group(None))
    np.testing.assert_allclose(pen[0], -0.16377, atol=5e-6)
    assert np.all(np.diff(pen) > 0)  # later ranks are penalised less


def test_advantage_goldens(registry):
    r0, _ = _ranking_rule(registry, 0)
    np.testing.assert_allclose(r0.mean(), 0.010236, atol=1e-6)
    np.testing.assert_allclose(r0.std(ddof=1), 0.264494, atol=1e-6)
    a = compute_advantages(r0[None], "grpo")[0]
    np.testing.assert_allclose(a[[0, 1, 15]], [3.74069, -0.42921, -0.19011], atol=5e-5)
    assert abs(float(a.astype(np.float64).sum())) < 1e-5
    r5, _ = _ranking_rule(registry, 5)
    a5 = compute_advantages(r5[None], "grpo")[0]
    np.testing.assert_allclose(a5[[5, 0]], [3.72175, -0.62537], atol=5e-5)


def test_advantage_options():
    r = np.array([[1.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    mean, std1, std0 = 0.25, np.std([1, 0, 0, 0], ddof=1), np.std([1, 0, 0, 0])
    np.testing.assert_allclose(compute_advantages(r, "grpo")[0], (r[0] - mean) / (std1 + 1e-4), rtol=1e-6)
    np.testing.assert_allclose(compute_advantages(r, "grpo", eps=1e-6, ddof=0)[0], (r[0] - mean) / (std0 + 1e-6),
                               rtol=1e-6)
    np.testing.assert_allclose(compute_advantages(r, "rloo")[0], r[0] - (r[0].sum() - r[0]) / 3, rtol=1e-6)
    np.testing.assert_allclose(compute_advantages(r, "drgrpo")[0], r[0] - mean, rtol=1e-6)
    for name in ("grpo", "rloo", "drgrpo"):
        np.testing.assert_array_equal(compute_advantages(r, name)[1], 0.0)
    assert zero_advantage_fraction(r) == 0.5
    with pytest.raises(ConfigError, match="unknown estimator"):
        compute_advantages(r, "ppo")


def test_prefix_reward(registry):
    prefix = _build(registry, "prefix")
    t = "<a_1><b_2><c_3>"
    comps = (t + "\n", "<a_1><b_2><c_9>", "<a_1><b_9><c_3>", "<a_9><b_2><c_3>", "junk", "<a_1><b_2><c_3><d_1>")
    out = prefix(RewardGroup(sample_id=0, target_sid=t, completions=comps, scores=np.zeros(6, np.float32)))
    np.testing.assert_allclose(out, [1, 2 / 3, 1 / 3, 0, 0, 2 / 3], rtol=1e-6)
    w = _build(registry, "prefix", level_weights=[2.0, 1.0, 1.0])
    out = w(RewardGroup(sample_id=0, target_sid=t, completions=comps[:3], scores=np.zeros(3, np.float32)))
    np.testing.assert_allclose(out, [1, 0.75, 0.5], rtol=1e-6)
    with pytest.raises(SidError):
        _build(registry, "prefix", level_weights=[1.0])(_group(0))
    with pytest.raises(ValueError):
        _build(registry, "prefix", level_weights=[])


def test_binding_by_sample_id_same_history_different_targets(registry):
    rule = _build(registry, "rule")
    comps = (SIDS[1], SIDS[2])
    groups = [RewardGroup(sample_id=i, target_sid=SIDS[1 + i], completions=comps, scores=np.zeros(2, np.float32))
              for i in range(2)]
    total, per = score_groups({"rule": rule}, {"rule": 1.0}, groups)
    np.testing.assert_array_equal(total, [[1, 0], [0, 1]])


def test_combine_checks_shapes():
    bad = {"bad": lambda g: np.zeros(3, np.float32)}
    with pytest.raises(TrainingError, match="shape"):
        combine_rewards(bad, {}, _group(0))
    nan = {"n/a": lambda g: np.full(G, np.nan, np.float32), "one": lambda g: np.ones(G, np.float32)}
    total, _ = combine_rewards(nan, {"one": 2.0}, _group(0))
    np.testing.assert_array_equal(total, 2.0)


@pytest.mark.parametrize("name", ["rule", "ranking", "prefix"])
def test_builtin_rewards_conform(registry, name):
    check_hit_reward(_build(registry, name))
    check_reward(_build(registry, name))
