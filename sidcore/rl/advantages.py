"""Group-relative advantage estimators over rewards ``[B, G]`` (B prompts, G rollouts each).

- ``grpo``   (upstream MiniOneRec): ``A = (r - mean_g) / (std_g + eps)``, ``std`` with Bessel's
  correction (``ddof=1``, torch's default) and ``eps = 1e-4``; Tunix uses ``eps = 1e-6``.
- ``rloo``   leave-one-out baseline: ``A_i = r_i - mean_{j != i} r_j = G / (G - 1) * (r_i - mean_g)``.
- ``drgrpo`` Dr. GRPO: ``A = r - mean_g`` (no division by the group std, which inflates the
  advantages of near-constant groups).

A group whose G rewards are equal has zero advantage under every estimator (it carries no signal);
`zero_advantage_fraction` counts those for telemetry. Host side, float64 internally, float32 out.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from sidcore.errors import ConfigError

__all__ = ["ESTIMATORS", "compute_advantages", "grpo", "rloo", "drgrpo", "zero_advantage_fraction"]


def _check(rewards: np.ndarray) -> np.ndarray:
    r = np.asarray(rewards, np.float64)
    if r.ndim != 2 or r.shape[1] < 1:
        raise ConfigError(f"advantages need rewards of shape [prompts, G], got {r.shape}")
    return r


def grpo(rewards: np.ndarray, *, eps: float = 1e-4, ddof: int = 1) -> np.ndarray:
    r = _check(rewards)
    if ddof >= r.shape[1]:
        raise ConfigError(f"rl.advantage_ddof={ddof} needs more than {ddof} generations per prompt, got {r.shape[1]}")
    mean = r.mean(axis=1, keepdims=True)
    std = r.std(axis=1, ddof=ddof, keepdims=True)
    return ((r - mean) / (std + eps)).astype(np.float32)


def rloo(rewards: np.ndarray, **_: object) -> np.ndarray:
    r = _check(rewards)
    g = r.shape[1]
    if g < 2:
        raise ConfigError("rl.advantage=rloo needs at least 2 generations per prompt")
    return (g / (g - 1) * (r - r.mean(axis=1, keepdims=True))).astype(np.float32)


def drgrpo(rewards: np.ndarray, **_: object) -> np.ndarray:
    r = _check(rewards)
    return (r - r.mean(axis=1, keepdims=True)).astype(np.float32)


ESTIMATORS: dict[str, Callable[..., np.ndarray]] = {"grpo": grpo, "rloo": rloo, "drgrpo": drgrpo}


def compute_advantages(rewards: np.ndarray, name: str = "grpo", *, eps: float = 1e-4, ddof: int = 1) -> np.ndarray:
    """``[B, G]`` float32 advantages of ``rewards [B, G]`` with estimator ``name``."""
    if name not in ESTIMATORS:
        raise ConfigError(f"rl.advantage: unknown estimator '{name}'; choose one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name](rewards, eps=eps, ddof=ddof)


def zero_advantage_fraction(rewards: np.ndarray) -> float:
    """Share of groups whose rewards are all equal (zero advantage: no learning signal)."""
    r = _check(rewards)
    return float(np.mean(np.all(r == r[:, :1], axis=1)))
