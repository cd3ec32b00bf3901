"""Per-step RL telemetry: reward means/stds (total and per reward), zero-advantage share, KL mean and
quantiles (upstream's KL is heavy-tailed), distinct top-1 items (a collapse detector), train hit
rates of beam 0, loss, gradient norm and timings. Keys live under ``rl/`` in ``metrics.jsonl``/W&B."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["step_values"]


def step_values(info: Mapping[str, Any], examples: Sequence[Any], *, lr: float, step_time: float) -> dict[str, float]:
    total = np.asarray(info["rewards"], np.float64)  # [B, G]
    m = info["metrics"]
    kl = np.asarray(m["kl_seq"], np.float64).ravel()  # [N]
    sids = info["sids"]  # [B, G]
    targets = np.array([e.target_sid for e in examples])
    hits = sids == targets[:, None]  # [B, G]
    values: dict[str, float] = {
        "rl/reward_mean": float(total.mean()),
        "rl/reward_std": float(total.std()),
        "rl/reward_group_std_mean": float(total.std(axis=1).mean()),
        "rl/zero_adv_frac": float(info["zero_adv_frac"]),
        "rl/loss": float(m["loss"]),
        "rl/grad_norm": float(m["grad_norm"]),
        "rl/clip_frac": float(m["clip_frac"]),
        "rl/kl_mean": float(kl.mean()),
        "rl/kl_p50": float(np.quantile(kl, 0.5)),
        "rl/kl_p90": float(np.quantile(kl, 0.9)),
        "rl/kl_p99": float(np.quantile(kl, 0.99)),
        "rl/kl_max": float(kl.max()),
        "rl/hit@1": float(hits[:, 0].mean()),
        "rl/hit@G": float(hits.any(axis=1).mean()),
        "rl/distinct_top1": float(len(set(sids[:, 0].tolist()))),
        "rl/distinct_top1_frac": float(len(set(sids[:, 0].tolist())) / max(len(examples), 1)),
        "rl/learning_rate": float(lr),
        "rl/rollout_time_sec": float(info["rollout_time"]),
        "rl/reward_time_sec": float(info["reward_time"]),
        "rl/update_time_sec": float(info["update_time"]),
        "rl/step_time_sec": float(step_time),
        "rl/completions_per_sec": float(total.size / step_time) if step_time > 0 else 0.0,
    }
    for name, r in info["per_reward"].items():
        r = np.asarray(r, np.float64)
        values[f"rl/reward/{name}_mean"] = float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")
        values[f"rl/reward/{name}_std"] = float(np.nanstd(r)) if np.isfinite(r).any() else float("nan")
    return values
