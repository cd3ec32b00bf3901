"""A run's training plan, computed once: batch math, optimizer steps and the LR schedule.

Batch math (reference §4.2): ``replicas = dp*fsdp``; ``micro = per_device_train_batch_size *
replicas`` rows per micro-batch; ``train.global_batch_size > 0`` must be an exact multiple of
``micro`` and gives the accumulation count; the effective batch is ``micro * accumulation``.
Steps: ``train.max_steps`` if > 0, else ``ceil(epochs * ceil(examples / effective))``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import attrs

from sidcore.config.schema import TrainConfig
from sidcore.errors import ConfigError
from sidcore.train.step import make_schedule_factory


@attrs.define(kw_only=True)
class BatchMath:
    replicas: int
    micro_rows: int
    accumulation: int

    @property
    def effective(self) -> int:
        return self.micro_rows * self.accumulation


def batch_math(train: TrainConfig, mesh: Any, process_count: int = 1) -> BatchMath:
    replicas = int(mesh.shape["dp"] * mesh.shape["fsdp"])
    micro = train.per_device_train_batch_size * replicas
    gbs = train.global_batch_size
    if gbs > 0:
        if gbs % micro:
            raise ConfigError(
                f"train.global_batch_size={gbs} is not a multiple of per_device_train_batch_size * replicas "
                f"= {train.per_device_train_batch_size} * {replicas} = {micro}"
            )
        accum = gbs // micro
    else:
        accum = train.gradient_accumulation_steps
    if micro % process_count:
        raise ConfigError(f"micro-batch rows {micro} do not split over {process_count} processes")
    return BatchMath(replicas=replicas, micro_rows=micro, accumulation=accum)


def total_steps(train: TrainConfig, n_examples: int, batch: BatchMath) -> int:
    if train.max_steps > 0:
        return train.max_steps
    return max(1, math.ceil(train.num_train_epochs * math.ceil(n_examples / batch.effective)))


@attrs.define(kw_only=True)
class TrainPlan:
    batch: BatchMath
    total_steps: int
    make_schedule: Callable[[float], Any]  # peak LR -> optax schedule over total_steps


def make_plan(train: TrainConfig, mesh: Any, n_examples: int, process_count: int = 1) -> TrainPlan:
    batch = batch_math(train, mesh, process_count)
    steps = total_steps(train, n_examples, batch)
    schedule = make_schedule_factory(train.lr_schedule, warmup_steps=train.warmup_steps, total_steps=steps)
    return TrainPlan(batch=batch, total_steps=steps, make_schedule=schedule)
