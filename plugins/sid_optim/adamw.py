"""The `adamw` optimizer component: ``optax.adamw`` driven by the kernel's learning-rate schedule.

This is the upstream MiniOneRec / MLLM-JAX baseline (reference-spec §5.1): beta (0.9, 0.999),
eps 1e-8, weight decay 0.0 (note ``optax.adamw``'s own default is 1e-4, so it is always passed),
first moment in the parameter dtype unless ``mu_dtype`` is set. Gradient clipping is chained in
front by the kernel, never here.
"""

from __future__ import annotations

from typing import Callable

import optax

from sid_optim.common import dtype_or_none, keep_update_dtypes
from sid_optim.config import AdamWConfig


def build(
    cfg: AdamWConfig,
    *,
    learning_rate: float,
    make_schedule: Callable[[float], optax.Schedule],
) -> optax.GradientTransformation:
    """Build AdamW for the kernel.

    Args:
        cfg: the component's options.
        learning_rate: peak learning rate (``train.learning_rate``).
        make_schedule: ``peak -> schedule`` owned by the kernel (warmup/decay shape).

    Returns:
        An ``optax.GradientTransformation`` whose updates keep the gradients' dtypes.
    """
    tx = optax.adamw(
        make_schedule(learning_rate),
        b1=cfg.b1,
        b2=cfg.b2,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        mu_dtype=dtype_or_none(cfg.mu_dtype),
    )
    return keep_update_dtypes(tx)
