"""Per-step RL telemetry: reward means/stds (total and per reward), zero-advantage share, KL mean and
quantiles (upstream's KL is heavy-tailed), distinct top-1 items (a collapse detector), train hit
rates of beam 0, upstream's categorical/token diversity and completion length, loss, gradient norm
and timings. Keys live under ``rl/`` in ``metrics.jsonl``/W&B.

`rl_eval` is upstream's RL eval (``eval_step``): the valid split's prompts through the same rollout,
rewards and GRPO loss, without an update; keys under ``eval/``. `check_rl_options` checks the
step-shape options against the batch and returns the RL eval interval in steps.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from sidcore.errors import ConfigError

__all__ = ["check_rl_options", "rl_eval", "step_values"]


def check_rl_options(cfg: Any, prompts: int, replicas: int, steps: int, n_eval: int) -> int:
    """Check ``gradient_accumulation_steps`` against the ``prompts`` per step; returns the RL eval
    interval in steps (``rl.eval_steps`` < 1 is a share of ``steps``, rounded up as HF does; 0: never)."""
    k = int(cfg.gradient_accumulation_steps)
    if prompts % k:
        raise ConfigError(f"rl.gradient_accumulation_steps={k} does not divide the {prompts} prompts per step "
                          f"(rl.batch_size / rl.num_generations)")
    if (prompts // k) % replicas:
        raise ConfigError(f"rl.gradient_accumulation_steps={k}: micro-batches of {prompts // k} prompts do not "
                          f"split over {replicas} data replicas")
    e = float(cfg.eval_steps)
    if e <= 0:
        return 0
    if n_eval == 0:
        raise ConfigError("rl.eval_steps > 0 but there are no valid-split RL prompts (data.eval_file)")
    return max(1, math.ceil(e * steps)) if e < 1 else int(e)


def rl_eval(rl_step: Any, params: Any, ref: Any, examples: Sequence[Any], pad: Callable[..., dict],
            mesh: Any, prompts: int, key: Any) -> dict[str, float]:
    """Rollouts, rewards and loss (no update) over ``examples`` in batches of ``prompts`` (the last
    batch is filled up with the first examples, which are not counted twice)."""
    import jax

    from sidcore.model.sharding import put_batch, to_host

    n = len(examples)
    sums: dict[str, float] = {}
    count = 0
    for bi, start in enumerate(range(0, n, prompts)):
        real = min(prompts, n - start)
        batch = [examples[(start + i) % n] for i in range(prompts)]
        dev = put_batch(pad(batch, rl_step.pad_id), mesh, axis=0)
        _, _, info = rl_step(params, None, ref, dev["input_ids"], dev["lengths"], batch,
                             jax.random.fold_in(key, bi), to_host=to_host, train=False)
        total = np.asarray(info["rewards"], np.float64)[:real]
        hits = info["sids"][:real] == np.array([e.target_sid for e in batch[:real]])[:, None]
        vals = {"loss": float(info["metrics"]["loss"]), "reward": total.mean(),
                "reward_std": total.std(axis=1, ddof=1).mean() if total.shape[1] > 1 else 0.0,
                "kl": float(np.asarray(info["metrics"]["kl_seq"], np.float64).mean()),
                "hit@1": hits[:, 0].mean(), **info["diversity"]}
        for name, r in info["per_reward"].items():
            vals[f"rewards/{name}"] = float(np.nanmean(np.asarray(r, np.float64)[:real]))
        for k, v in vals.items():
            sums[k] = sums.get(k, 0.0) + float(v) * real
        count += real
    return {f"eval/{k}": v / max(count, 1) for k, v in sums.items()}


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
        **{f"rl/{k}": float(v) for k, v in info.get("diversity", {}).items()},
        "rl/learning_rate": float(lr),
        "rl/rollout_time_sec": float(info["rollout_time"]),
        "rl/reward_time_sec": float(info["reward_time"]),
        "rl/update_time_sec": float(info["update_time"]),
        "rl/normaliser_rows": float(info.get("normaliser_rows", 0)),
        "rl/vocab_passes": float(info.get("vocab_passes", 0)),
        "rl/step_time_sec": float(step_time),
        "rl/completions_per_sec": float(total.size / step_time) if step_time > 0 else 0.0,
    }
    for name, r in info["per_reward"].items():
        r = np.asarray(r, np.float64)
        values[f"rl/reward/{name}_mean"] = float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")
        values[f"rl/reward/{name}_std"] = float(np.nanstd(r)) if np.isfinite(r).any() else float("nan")
    return values
