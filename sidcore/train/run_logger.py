"""Run logging: ``metrics.jsonl`` always, W&B when enabled, a progress line with ETA on a TTY.

Only process 0 logs. Keys follow the reference W&B names (``train/loss``,
``train/effective_batch_size``, ``train/step_time_sec``, ``train/samples_per_sec``, ``eval/...``)
plus throughput: ``train/tokens_per_sec`` (real, non-pad tokens), ``train/real_token_fraction``,
``train/mfu`` (when the device peak is known) and ``train/compiles``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from sidcore.files import atomic_write

log = logging.getLogger(__name__)

# Dense bf16 peak FLOP/s per chip, for the MFU estimate.
PEAK_FLOPS = {"TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v6 lite": 918e12,
              "TPU v6e": 918e12, "NVIDIA H100": 989e12, "NVIDIA H200": 989e12, "NVIDIA A100": 312e12}


def device_peak_flops() -> float | None:
    kind = jax.devices()[0].device_kind
    for name, peak in PEAK_FLOPS.items():
        if kind.startswith(name):
            return peak * jax.device_count()
    return None


def drop_records_after(path: Path, step: int) -> int:
    """Rewrite a ``metrics.jsonl`` without its records of steps > `step` (atomically); return how
    many were dropped. Unparseable lines (a torn last line after kill -9) are dropped too."""
    if not path.exists():
        return 0
    keep, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] > step:
            dropped += 1
        else:
            keep.append(line)
    if dropped:
        atomic_write(path, "".join(x + "\n" for x in keep))
    return dropped


class RunLogger:
    def __init__(self, out_dir: str | os.PathLike[str], *, wandb_cfg: Any, run_config: Mapping[str, Any],
                 flops_per_token: float, enabled: bool = True, every: int = 1) -> None:
        self.enabled = enabled
        self._every = max(1, every)
        self.path = Path(out_dir) / "metrics.jsonl"
        self.flops_per_token = flops_per_token
        self.peak = device_peak_flops()
        self.wandb = None
        self.tty = sys.stderr.isatty()
        self.t_start = time.perf_counter()
        self.total = 0
        self.initial = 0
        self.effective = 0
        self.compiles = 0
        if enabled and wandb_cfg.mode != "disabled":
            self._init_wandb(wandb_cfg, run_config)

    def _init_wandb(self, wandb_cfg: Any, run_config: Mapping[str, Any]) -> None:
        try:
            import wandb

            self.wandb = wandb.init(project=wandb_cfg.project, name=wandb_cfg.name, mode=wandb_cfg.mode,
                                    config=dict(run_config), dir=str(self.path.parent))
        except Exception as exc:  # noqa: BLE001 - W&B must never kill a run
            log.warning("W&B disabled: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            self.wandb = None

    def start(self, *, total: int, initial: int, effective: int) -> None:
        self.total, self.initial, self.effective = total, initial, effective
        self.t_start = time.perf_counter()
        if self.enabled and initial > 0:
            # A resumed run repeats the steps between its checkpoint and the crash: drop their records.
            dropped = drop_records_after(self.path, initial)
            if dropped:
                log.info("metrics.jsonl: dropped %d records after step %d (re-run after resume)", dropped, initial)

    def write(self, step: int, values: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        rec = {"step": step, **{k: (float(v) if isinstance(v, (np.floating, np.integer)) else v)
                                for k, v in values.items()}}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        if self.wandb is not None:
            self.wandb.log(dict(values), step=step)

    def train_step(self, step: int, metrics: Mapping[str, Any], host_batch: Mapping[str, np.ndarray], dt: float,
                   *, lr: float) -> dict[str, Any]:
        seg = host_batch["segment_ids"]
        real = int((seg > 0).sum())
        values = {
            "train/loss": float(metrics["loss"]),
            "train/learning_rate": lr,
            "train/grad_norm": float(metrics["grad_norm"]),
            "train/effective_batch_size": self.effective,
            "train/step_time_sec": dt,
            "train/samples_per_sec": self.effective / dt if dt > 0 else 0.0,
            "train/tokens_per_sec": real / dt if dt > 0 else 0.0,
            "train/label_tokens": float(metrics["tokens"]),
            "train/pad_len": int(seg.shape[-1]),
            "train/real_token_fraction": real / seg.size,
        }
        if self.peak and dt > 0:
            values["train/mfu"] = real * self.flops_per_token / dt / self.peak
        if self.enabled and (step % self._every == 0 or step == 1 or step == self.total):
            self.write(step, values)
        self._progress(step, values)
        return values

    def eval_step(self, step: int, values: Mapping[str, Any]) -> None:
        self.write(step, dict(values))
        if self.enabled:
            shown = ", ".join(f"{k}={v:.5g}" for k, v in values.items() if isinstance(v, (int, float)))
            log.info("step %d: %s", step, shown)

    def _progress(self, step: int, values: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        done = step - self.initial
        elapsed = time.perf_counter() - self.t_start
        eta = elapsed / max(done, 1) * (self.total - step)
        line = (f"step {step}/{self.total} loss {values['train/loss']:.4f} "
                f"{values['train/tokens_per_sec']:.0f} tok/s eta {eta:.0f}s")
        if self.tty:
            print("\r" + line.ljust(80), end="" if step < self.total else "\n", file=sys.stderr, flush=True)
        elif step == 1 or step == self.total or step % self._every == 0:
            log.info(line)

    def finish(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
