"""Run logging: ``metrics.jsonl`` always, W&B when enabled, a progress bar (or log lines) for training.

One logger lives for the whole ``sid run`` job (train, train_eval and eval modes alike): the job
creates it before training and finishes it after the final decoding eval, so W&B and
``metrics.jsonl`` hold every number the terminal shows. Only process 0 logs. Keys follow the
reference W&B names (``train/loss``, ``train/effective_batch_size``, ``train/step_time_sec``,
``train/samples_per_sec``, ``eval/...``) plus throughput: ``train/tokens_per_sec`` (real, non-pad
tokens), ``train/real_token_fraction``, ``train/mfu`` (when the device peak is known),
``train/compiles`` (distinct batch shapes so far = train-step compiles) and ``train/compiled``
(1 on a step that compiled, so plots can leave it out). The final eval goes under ``final/``.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from sidcore.files import atomic_write
from sidcore.progress import Progress

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


def drop_final_records(path: Path) -> int:
    """Rewrite a ``metrics.jsonl`` without its ``final/...`` records (atomically); return how many.

    A rerun of a finished run evaluates again: its final block replaces the earlier one instead of
    standing next to it."""
    if not path.exists():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()

    def is_final(line: str) -> bool:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            return False
        return isinstance(rec, dict) and any(str(k).startswith("final/") for k in rec)

    keep = [x for x in lines if not is_final(x)]
    if len(keep) != len(lines):
        atomic_write(path, "".join(x + "\n" for x in keep))
    return len(lines) - len(keep)


def default_run_name(category: str, now: float | None = None) -> str:
    """``<category>-sid-sft-<YYYYmmdd-HHMMSS>`` (docs/config.md, ``wandb.name``)."""
    return f"{category}-sid-sft-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"


def _plain(v: Any) -> Any:
    return float(v) if isinstance(v, (np.floating, np.integer)) else v


class RunLogger:
    def __init__(self, out_dir: str | os.PathLike[str], *, wandb_cfg: Any, run_config: Mapping[str, Any],
                 flops_per_token: float, enabled: bool = True, every: int = 1, run_name: str | None = None) -> None:
        self.enabled = enabled
        self._every = max(1, every)
        self.path = Path(out_dir) / "metrics.jsonl"
        self.flops_per_token = flops_per_token
        self.peak = device_peak_flops()
        self.wandb = None
        self.run_name = wandb_cfg.name or run_name
        self.total = 0
        self.initial = 0
        self.effective = 0
        self.last_step = 0
        self._shapes: set[tuple] = set()
        self._step_times: list[float] = []  # steps that did not compile
        self._tokens_per_sec: list[float] = []
        self._last_loss: float | None = None
        self._progress: Progress | None = None
        self._summary: dict[str, Any] = {}
        self._final_written = False
        if enabled and wandb_cfg.mode != "disabled":
            self._init_wandb(wandb_cfg, run_config)

    @property
    def compiles(self) -> int:
        return len(self._shapes)

    def _init_wandb(self, wandb_cfg: Any, run_config: Mapping[str, Any]) -> None:
        try:
            import wandb

            self.wandb = wandb.init(project=wandb_cfg.project, name=self.run_name, mode=wandb_cfg.mode,
                                    config=dict(run_config), dir=str(self.path.parent))
        except Exception as exc:  # noqa: BLE001 - W&B must never kill a run
            log.warning("W&B disabled: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            self.wandb = None

    # ------------------------------------------------------------------ training
    def start(self, *, total: int, initial: int, effective: int) -> None:
        self.total, self.initial, self.effective = total, initial, effective
        self.last_step = initial
        self.end_training()
        if total > initial:
            self._progress = Progress(total, desc="train", unit="step", initial=initial, log_every=self._every,
                                      enabled=self.enabled)
        if self.enabled and initial > 0:
            # A resumed run repeats the steps between its checkpoint and the crash: drop their records.
            dropped = drop_records_after(self.path, initial)
            if dropped:
                log.info("metrics.jsonl: dropped %d records after step %d (re-run after resume)", dropped, initial)

    def write(self, step: int, values: Mapping[str, Any]) -> None:
        """One ``metrics.jsonl`` record and one W&B log call (process 0 only)."""
        if not self.enabled:
            return
        values = {k: _plain(v) for k, v in values.items()}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, **values}) + "\n")
        if self.wandb is not None:
            self.wandb.log(dict(values), step=step)

    def train_step(self, step: int, metrics: Mapping[str, Any], host_batch: Mapping[str, np.ndarray], dt: float,
                   *, lr: float) -> dict[str, Any]:
        seg = host_batch["segment_ids"]
        real = int((seg > 0).sum())
        shape = tuple(sorted((k, tuple(np.shape(v))) for k, v in host_batch.items()))
        compiled = shape not in self._shapes
        self._shapes.add(shape)
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
            "train/compiles": self.compiles,
            "train/compiled": int(compiled),
        }
        if self.peak and dt > 0:
            values["train/mfu"] = real * self.flops_per_token / dt / self.peak
        if not compiled:
            self._step_times.append(dt)
            self._tokens_per_sec.append(values["train/tokens_per_sec"])
        self._last_loss = values["train/loss"]
        self.last_step = step
        if self.enabled and (step % self._every == 0 or step == 1 or step == self.total or compiled):
            self.write(step, values)
        if self._progress is not None:
            self._progress.update(1, loss=values["train/loss"], tok_s=round(values["train/tokens_per_sec"]))
            if step >= self.total:
                self.end_training()
        return values

    def end_training(self) -> None:
        """Close the training progress bar (early stop, last step, error)."""
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def eval_step(self, step: int, values: Mapping[str, Any]) -> None:
        self.write(step, dict(values))
        if self.enabled:
            shown = ", ".join(f"{k}={v:.5g}" for k, v in values.items() if isinstance(v, (int, float)))
            log.info("step %d: %s", step, shown)

    def train_stats(self) -> dict[str, Any]:
        """Timing and compile counts of the training steps, for ``run_summary.json``."""
        times = self._step_times
        return {
            "compiles": self.compiles,
            "final_loss": self._last_loss,
            "step_time_sec_median": statistics.median(times) if times else None,
            "tokens_per_sec_median": statistics.median(self._tokens_per_sec) if self._tokens_per_sec else None,
            "timed_steps": len(times),
        }

    # ------------------------------------------------------------------ final eval + end
    def final(self, values: Mapping[str, Any], *, step: int | None = None) -> None:
        """The run's final numbers (``final/...``: test metrics, baseline, timing) in the jsonl, W&B's
        history and W&B's run summary."""
        step = self.last_step if step is None else step
        if self.enabled and not self._final_written:
            self._final_written = True
            if drop_final_records(self.path):
                log.info("metrics.jsonl: replaced the final block of an earlier run of this command")
        self.write(step, values)
        self._summary.update({k: _plain(v) for k, v in values.items()})

    def finish(self, summary: Mapping[str, Any] | None = None) -> None:
        self.end_training()
        if self.wandb is not None:
            try:
                for k, v in {**self._summary, **(summary or {})}.items():
                    if isinstance(v, (int, float, str)) or v is None:
                        self.wandb.summary[k] = v
            finally:
                self.wandb.finish()
                self.wandb = None
