"""The SFT training loop: jitted steps on the mesh, eval cadence, checkpoints, resume.

The batch math and step count come in a `sidcore.train.plan.TrainPlan`. Process 0 alone writes checkpoints and logs. SIGTERM/SIGINT finish the current step, write
``last`` and exit with `Preempted` (75); a rerun resumes from the newest complete checkpoint.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from typing import Any, Callable

import attrs
import jax
from flax import nnx

from sidcore.config.schema import DataConfig, TrainConfig
from sidcore.data.batching import DataOrder
from sidcore.model.sharding import param_shardings, put_batch, shard_params
from sidcore.errors import Preempted, TrainingError
from sidcore.model.merge import make_merge
from sidcore.train import batches
from sidcore.train import checkpointing as ckpt
from sidcore.train import profiling
from sidcore.train import state as ckpt_state
from sidcore.train.plan import BatchMath, TrainPlan
from sidcore.train.step import make_eval_loss, make_train_step

log = logging.getLogger(__name__)


class StopFlag:
    """SIGTERM/SIGINT -> finish the step, checkpoint, exit (spot preemption)."""

    def __init__(self) -> None:
        self.raised: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.raised = signal.Signals(signum).name

    def __exit__(self, *_: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


@attrs.define(kw_only=True)
class Trainer:
    """Owns the jitted step and the mutable training state of one run.

    It gets typed config sections and built components only: the plan (batch math, step count,
    schedule) and the optax transform are computed once by the job.
    """

    train: TrainConfig
    data: DataConfig
    seed: int
    plan: TrainPlan
    bundle: Any  # sidcore.model.bundle.ModelBundle
    tx: Any
    store: Any
    examples: list[Any]
    val_examples: list[Any]
    logger: Any  # sidcore.train.run_logger.RunLogger
    evaluate: Callable[[Any, int], dict[str, float]] | None = None  # decoding eval (train_eval)
    optimizer_name: str = ""  # recorded in checkpoint metadata
    start_from: Any = None  # sidcore.run.checkpoints.Opened: train.resume_from_checkpoint, if set
    resume: Any = None  # sidcore.train.checkpointing.Resumed: the run's own checkpoint (checked by the job)
    settings: dict[str, Any] = attrs.field(factory=dict)  # sidcore.run.identity.run_settings, into every meta
    params: Any = None  # final params after run()
    order: Any = None  # the DataOrder of this run (its state goes into checkpoint metadata)

    def run(self) -> dict[str, Any]:
        cfg, mesh = self.train, self.bundle.mesh
        math_, steps = self.plan.batch, self.plan.total_steps

        graphdef, st = nnx.split(self.bundle.model)
        params = shard_params(nnx.to_pure_dict(st), mesh)
        template = jax.tree.map(lambda v: v, st)
        merge = make_merge(graphdef, template)
        expected = ckpt_state.shape_signature(params)
        # Optimizer state follows the parameter rules (scalars replicated) on the whole mesh.
        opt_sh = param_shardings(jax.eval_shape(self.tx.init, params), mesh)
        opt_state = jax.jit(self.tx.init, out_shardings=opt_sh)(params)
        pad_id = int(self.bundle.tokenizer.pad_token_id)
        # Pin output shardings to the inputs': otherwise XLA may pick equivalent-but-different
        # specs for the outputs and the second step recompiles.
        shardings = (param_shardings(params, mesh), opt_sh)
        step_fn = jax.jit(
            make_train_step(merge, self.tx, real_vocab=self.bundle.real_vocab,
                            normalization=cfg.loss_normalization),
            donate_argnums=(0, 1),
            out_shardings=(*shardings, None),
        )
        eval_loss = jax.jit(make_eval_loss(merge, real_vocab=self.bundle.real_vocab))

        step, order_state, best = 0, (0, 0), {"value": None, "step": None, "bad_evals": 0}
        resumed = self._restore(expected, opt_state)
        if resumed is not None:
            params, restored_opt, meta, resumed_from = resumed
            params = shard_params(params, mesh)
            if restored_opt is not None:
                opt_state = jax.device_put(restored_opt, opt_sh)
            if meta:
                step, order_state, best = meta["step"], tuple(meta["data_order"]), meta.get("best", best)
        if resumed is not None:
            ckpt.nothing_left(step, steps, resumed_from)
        self.logger.start(total=steps, initial=step, effective=math_.effective)
        eval_every = self._eval_every(steps, math_)
        lr_at = self.plan.make_schedule(cfg.learning_rate)  # for logging only
        last_metrics: dict[str, Any] = {}
        stopped_early = False
        order = self.order = DataOrder(len(self.examples), math_.effective, seed=self.seed,
                                       shuffle=cfg.seed_shuffle, state=order_state)
        with StopFlag() as stop:
            while step < steps:
                profiling.step("train", step + 1)
                idx = order.next_batch()
                host_batch = batches.collate_step([self.examples[i] for i in idx], micro_rows=math_.micro_rows,
                                            n_micro=math_.accumulation, data_cfg=self.data, pad_id=pad_id,
                                            row_multiple=math_.replicas)
                batch = put_batch(host_batch, mesh, axis=1)
                t0 = time.perf_counter()
                params, opt_state, metrics = step_fn(params, opt_state, batch)
                loss = float(metrics["loss"])
                dt = time.perf_counter() - t0
                if not math.isfinite(loss):
                    raise TrainingError(
                        f"non-finite loss at step {step + 1}; the last good checkpoint is kept in {self.store.uri}"
                    )
                step += 1
                last_metrics = self.logger.train_step(step, metrics, host_batch, dt, lr=float(lr_at(step - 1)))
                if eval_every and step % eval_every == 0 and step < steps:
                    stopped_early = self._periodic_eval(step, params, opt_state, best, eval_loss, math_,
                                                        pad_id)
                if cfg.save_steps and step % cfg.save_steps == 0:
                    self._save(f"step{step}", params, opt_state, step, best)
                    self._rotate()
                if stop.raised:
                    self._save("last", params, opt_state, step, best)
                    ckpt.finish(self.store)
                    raise Preempted(f"stopped by {stop.raised} after step {step}; checkpoint 'last' written, "
                                    "rerun the same command to resume")
                if stopped_early:
                    break
        if eval_every is not None and not stopped_early:
            self._periodic_eval(step, params, opt_state, best, eval_loss, math_, pad_id, final=True)
        if cfg.save_last:
            self._save("last", params, opt_state, step, best)
        ckpt.finish(self.store)
        self.params = params
        return {"steps": step, "micro_steps": step * math_.accumulation, "effective_batch_size": math_.effective,
                "final_loss": last_metrics.get("train/loss"), "best": best}

    # ------------------------------------------------------------------ helpers
    def _eval_every(self, steps: int, math_: BatchMath) -> int | None:
        e = self.train.eval_steps
        if e < 0:
            return None
        if e == 0:
            return max(1, math.ceil(len(self.examples) / math_.effective))
        if e < 1:  # a share of all steps, rounded up (HF Trainer's fractional eval_steps)
            return max(1, math.ceil(e * steps))
        return int(e)

    def validation_loss(self, params: Any, eval_loss: Any, math_: BatchMath, pad_id: int) -> float:
        rows = self.train.per_device_eval_batch_size * math_.replicas
        # one example per row (never packed), so padded duplicates can be zero-weighted below
        data_cfg = attrs.evolve(self.data, pad_policy="buckets") if self.data.pad_policy == "pack" \
            else self.data
        tot = cnt = 0.0
        for i in range(0, len(self.val_examples), rows):
            chunk = self.val_examples[i : i + rows]
            chunk = chunk + [chunk[-1]] * (rows - len(chunk))
            hb = batches.collate_step(chunk, micro_rows=rows, n_micro=1, data_cfg=data_cfg, pad_id=pad_id)
            hb = {k: v[0] for k, v in hb.items()}
            if len(self.val_examples[i : i + rows]) < rows:  # padded duplicates carry no weight
                hb["label_w"][len(self.val_examples[i : i + rows]):] = 0.0
            s, c = eval_loss(params, put_batch(hb, self.bundle.mesh, axis=0))
            tot += float(s)
            cnt += float(c)
        return tot / max(cnt, 1.0)

    def _periodic_eval(self, step, params, opt_state, best, eval_loss, math_, pad_id, final=False) -> bool:
        cfg = self.train
        metric = cfg.save_best_metric
        values: dict[str, float] = {}
        if self.val_examples and (metric == "eval_loss" or not self.evaluate):
            values["eval/loss"] = self.validation_loss(params, eval_loss, math_, pad_id)
        if self.evaluate is not None and metric != "eval_loss":
            values.update({f"eval/{k}": v for k, v in self.evaluate(params, step).items()})
        if not values:
            return False
        key = "eval/loss" if metric == "eval_loss" else f"eval/{metric}"
        value = values.get(key)
        improved = False
        if value is not None:
            lower = metric == "eval_loss"
            if best["value"] is None or (value < best["value"] if lower else value > best["value"]):
                best.update(value=value, step=step, bad_evals=0)
                improved = True
            else:
                best["bad_evals"] += 1
            values["eval/best_value"] = best["value"]
            values["eval/best_step"] = best["step"]
        self.logger.eval_step(step, values)
        if improved and cfg.save_best:
            self._save("best", params, opt_state, step, best)
        patience = cfg.early_stopping_patience
        if patience and best["bad_evals"] >= patience and not final:
            log.info("early stopping at step %d (no improvement in %d evals)", step, patience)
            return True
        return False

    def _meta(self, step: int, best: dict[str, Any]) -> dict[str, Any]:
        return {"step": step, "data_order": list(self.order.state), "best": dict(best), "seed": self.seed,
                "vocab_size": self.bundle.real_vocab, "optimizer": self.optimizer_name, "stage": "sft",
                "settings": ckpt.normalise(self.settings)}

    def _save(self, name: str, params: Any, opt_state: Any, step: int, best: dict[str, Any]) -> None:
        ckpt.save_state(self.store, name, params, opt_state, self._meta(step, best))

    def _rotate(self) -> None:
        ckpt.rotate(self.store, self.train.save_total_limit)

    def _restore(self, expected: Any, opt_template: Any) -> tuple[Any, Any, dict[str, Any], str] | None:
        """What to start from: the run's own newest checkpoint (found and checked by the job before
        anything was written) on a rerun; else ``train.resume_from_checkpoint``; else nothing.

        From ``train.resume_from_checkpoint`` (an explicit start: other step counts or data are the
        user's choice) the optimizer state and data cursor come along when it is an SFT checkpoint of
        the same optimizer settings and ``train.trainable``; otherwise only its weights, and the log
        names the settings that differ.
        Returns ``(params, opt_state or None, meta or {}, source)``.
        """
        own = self.resume
        if own is not None:
            params = ckpt_state.params_from_tree(own.tree, expected, own.source)
            opt_state = ckpt_state.opt_state_from_tree(own.tree, ckpt_state.host(opt_template), own.source)
            log.info("resumed from %s (step %d): weights, optimizer state and data cursor", own.source, own.step)
            return params, opt_state, own.meta, own.source
        start = self.start_from
        if start is None:
            return None
        params = ckpt_state.params_from_tree(start.tree, expected, start.source)
        meta = start.meta
        resumable = "opt_state" in start.tree and "step" in meta and "data_order" in meta
        now = ckpt.normalise(self.settings)
        recorded = meta.get("settings")
        if recorded is None:  # older record: the optimizer's name is all it has
            recorded, now = {"optimizer.name": meta.get("optimizer", self.optimizer_name)}, {
                "optimizer.name": self.optimizer_name}
        state_keys = [k for k in set(recorded) | set(now) if k.startswith("optimizer.") or k == "train.trainable"]
        diff = ckpt.differing({k: recorded.get(k) for k in state_keys}, {k: now.get(k) for k in state_keys})
        stage = meta.get("stage", "sft")
        if resumable and stage == "sft" and not diff:
            opt_state = ckpt_state.opt_state_from_tree(start.tree, ckpt_state.host(opt_template), start.source)
            log.info("starting from %s: weights, optimizer state and data cursor (step %d) restored", start.source,
                     meta["step"])
            return params, opt_state, meta, start.source
        why = ("it has no optimizer state or data cursor" if not resumable else
               f"it is an {stage.upper()} checkpoint" if stage != "sft" else
               "its optimizer state belongs to other settings: " + ckpt.describe(diff, recorded, now))
        log.info("starting from %s: weights restored; fresh optimizer state and data order (%s)", start.source, why)
        return params, None, {}, start.source
