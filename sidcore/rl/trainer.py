"""The RL loop (`RLTrainer`) and its entry function `train_rl`, mirroring the SFT `Trainer`.

Per step: the next ``B = rl.batch_size / G`` prompts in (seed, cursor) order -> right-padded to a
``rl.prompt_bucket`` multiple -> `RLStep` (rollout jit, host rewards/advantages, update jit) ->
telemetry -> reference sync every ``rl.ref_sync_steps`` when ``rl.sync_ref_model`` -> checkpoints.
The sampling key of step ``s`` is ``fold_in(PRNGKey(seed), s)``, so a resumed run replays exactly.
Checkpoints hold ``params``, ``opt_state`` and (with ``beta > 0``) ``ref_params``; metadata holds
the step and the data cursor. SIGTERM/SIGINT finish the step, write ``last`` and raise `Preempted`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Mapping, Sequence

import attrs
import jax
import numpy as np
import optax
from flax import nnx

from sidcore.data.batching import DataOrder
from sidcore.decoding.trie import SidTrie
from sidcore.errors import CheckpointError, ConfigError, Preempted, TrainingError
from sidcore.interfaces import Reward, SidCatalog
from sidcore.model.hf_params import unflatten_params
from sidcore.model.sharding import param_shardings, put_batch, shard_params, to_host
from sidcore.rl.config import RLConfig
from sidcore.rl.group_forward import supports_group_forward
from sidcore.rl.loss import sync_reference
from sidcore.rl.rollout import TrieSampler, check_group_batch
from sidcore.train import checkpointing as ckpt
from sidcore.rl.step import RLStep
from sidcore.rl.telemetry import check_rl_options, rl_eval, step_values
from sidcore.train import profiling
from sidcore.train import state as S
from sidcore.train.loop import StopFlag
from sidcore.model.merge import make_merge
from sidcore.train.step import make_schedule_factory

log = logging.getLogger(__name__)

__all__ = ["RLTrainer", "rl_total_steps", "rl_schedule", "default_rl_optimizer", "rollout_decoder", "train_rl"]


def check_rl_batch(cfg: RLConfig, mesh: Any, n_catalog: int) -> int:
    """Prompts per RL step, or a `ConfigError` when the batch does not split into groups, replicas
    and processes (the job calls this before it writes anything)."""
    prompts = check_group_batch(cfg.batch_size, cfg.num_generations, n_catalog)
    replicas = int(mesh.shape["dp"] * mesh.shape["fsdp"])
    if prompts % replicas or prompts % jax.process_count():
        raise ConfigError(f"rl.batch_size / num_generations = {prompts} prompts per step do not split over "
                          f"{replicas} data replicas and {jax.process_count()} processes")
    return prompts


def rl_total_steps(cfg: RLConfig, n_examples: int) -> int:
    """Optimizer steps: ``max_steps`` when > 0, else epochs over the prompts (ceil)."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    prompts = cfg.batch_size // cfg.num_generations
    return max(1, math.ceil(cfg.num_train_epochs * math.ceil(n_examples / max(prompts, 1))))


def rl_schedule(cfg: RLConfig, total_steps: int) -> optax.Schedule:
    warmup = int(round(cfg.warmup_ratio * total_steps))
    return make_schedule_factory(cfg.lr_schedule, warmup_steps=warmup, total_steps=total_steps)(cfg.learning_rate)


def default_rl_optimizer(cfg: RLConfig, total_steps: int) -> optax.GradientTransformation:
    """Upstream's optimizer: AdamW (weight decay 0) after global-norm clipping at ``max_grad_norm``.
    A run may pass any optimizer plugin's transform to `train_rl` instead."""
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm),
                       optax.adamw(rl_schedule(cfg, total_steps), weight_decay=0.0))


def rollout_decoder(cfg: RLConfig, decoder: Any, catalog: SidCatalog, eos_id: int) -> Any:
    """The rollout: ``decoder`` (beams, e.g. the ``trie`` decoder) or a `TrieSampler` over ``catalog``."""
    if cfg.rollout == "sample":
        trie = getattr(decoder, "trie", None) or SidTrie.from_catalog(catalog, eos_id=eos_id)
        return TrieSampler(trie=trie, temperature=cfg.temperature, sort=cfg.sample_order == "logprob")
    return decoder


@attrs.define(kw_only=True)
class RLTrainer:
    """Owns the compiled RL step and the mutable state of one RL run."""

    cfg: RLConfig
    bundle: Any  # sidcore.model.bundle.ModelBundle (model, tokenizer, real_vocab, mesh)
    tx: optax.GradientTransformation
    store: Any | None  # CheckpointStore (None: no checkpoints)
    decoder: Any  # beam decoder or TrieSampler (see `rollout_decoder`)
    rewards: Mapping[str, Reward]
    examples: Sequence[Any]  # sidcore.data.rl_tasks.RLExample
    catalog: SidCatalog
    logger: Any | None = None  # sidcore.train.run_logger.RunLogger
    seed: int = 42
    evaluate: Callable[[Any, int], dict[str, float]] | None = None
    eval_steps: int = 0  # > 0: evaluate every N steps (and at the end)
    resume: Any = None  # sidcore.train.checkpointing.Resumed: own checkpoint, found and checked by the job
    settings: dict[str, Any] = attrs.field(factory=dict)  # sidcore.run.identity.run_settings, into every meta
    eval_examples: Sequence[Any] = ()  # valid-split RL prompts for rl.eval_steps (upstream eval_step)
    params: Any = None  # final params after run()
    order: Any = None
    history: list[dict[str, float]] = attrs.field(factory=list)

    def run(self) -> dict[str, Any]:
        cfg, mesh = self.cfg, self.bundle.mesh
        missing = [r.name for r in cfg.rewards if r.name not in self.rewards]
        if missing:
            raise ConfigError(f"rl.rewards selects '{missing[0]}' but no such reward component was built")
        prompts = check_rl_batch(cfg, mesh, len(self.catalog.sids))
        replicas = int(mesh.shape["dp"] * mesh.shape["fsdp"])
        steps = rl_total_steps(cfg, len(self.examples))
        graphdef, st = nnx.split(self.bundle.model)
        params = shard_params(nnx.to_pure_dict(st), mesh)
        merge = make_merge(graphdef, jax.tree.map(lambda v: v, st))
        expected = S.shape_signature(params)
        p_sh = param_shardings(params, mesh)
        opt_sh = param_shardings(jax.eval_shape(self.tx.init, params), mesh)
        opt_state = jax.jit(self.tx.init, out_shardings=opt_sh)(params)
        ref = jax.tree.map(lambda x: x.copy(), params) if cfg.beta > 0 else None  # beta 0: no reference
        tok = self.bundle.tokenizer
        rl_step = RLStep(cfg, merge=merge, tx=self.tx, decoder=self.decoder, rewards=self.rewards, tokenizer=tok,
                         real_vocab=self.bundle.real_vocab, depth=int(self.catalog.token_ids.shape[1]),
                         vocab_size=int(self.bundle.model.vocab_size), param_shardings=p_sh, opt_shardings=opt_sh,
                         shared_prefix=cfg.shared_prefix and supports_group_forward(self.bundle.model),
                         catalog=self.catalog)
        rl_eval_every = check_rl_options(cfg, prompts, replicas, steps, len(self.eval_examples))
        step, order_state = 0, (0, 0)
        resumed = self._restore(expected, opt_state, ref is not None)
        if resumed is not None:
            params, opt_state, ref, meta = resumed
            params = shard_params(params, mesh)
            opt_state = jax.device_put(opt_state, opt_sh)
            ref = shard_params(ref, mesh) if ref is not None else None
            step, order_state = int(meta["step"]), tuple(meta["data_order"])
            log.info("rl: resumed from step %d", step)
            ckpt.nothing_left(step, steps, self.resume.source)
        order = self.order = DataOrder(len(self.examples), prompts, seed=self.seed, state=order_state)
        lr_at = rl_schedule(cfg, steps)
        if self.logger is not None:
            self.logger.start(total=steps, initial=step, effective=cfg.batch_size)
        key = jax.random.PRNGKey(self.seed)
        last: dict[str, float] = {}
        with StopFlag() as stop:
            while step < steps:
                profiling.step("rl", step + 1)
                batch_ex = [self.examples[int(i)] for i in order.next_batch()]
                t0 = time.perf_counter()
                dev = put_batch(self._pad(batch_ex, rl_step.pad_id), mesh, axis=0)
                params, opt_state, info = rl_step(params, opt_state, ref, dev["input_ids"], dev["lengths"],
                                                  batch_ex, jax.random.fold_in(key, step), to_host=to_host)
                loss = float(info["metrics"]["loss"])
                if not math.isfinite(loss):
                    where = self.store.uri if self.store is not None else "memory"
                    raise TrainingError(f"non-finite RL loss at step {step + 1}; the last good checkpoint is kept "
                                        f"in {where}")
                step += 1
                if ref is not None and cfg.sync_ref_model and step % cfg.ref_sync_steps == 0:
                    ref = jax.jit(sync_reference, static_argnums=2)(params, ref, cfg.ref_mixup_alpha)
                last = step_values(info, batch_ex, lr=float(lr_at(step - 1)), step_time=time.perf_counter() - t0)
                self.history.append(last)
                if step % cfg.logging_steps == 0 or step in (1, steps):
                    self._log(step, steps, last)
                if self.evaluate is not None and self.eval_steps and step % self.eval_steps == 0 and step < steps:
                    self._eval(params, step)
                if rl_eval_every and (step % rl_eval_every == 0 or step == steps):
                    self._rl_eval(rl_step, params, ref, step, key)
                if cfg.save_steps and step % cfg.save_steps == 0:
                    self._save(f"step{step}", params, opt_state, ref, step)
                    self._rotate()
                if stop.raised:
                    self._save("last", params, opt_state, ref, step)
                    ckpt.finish(self.store)
                    raise Preempted(f"stopped by {stop.raised} after step {step}; checkpoint 'last' written, "
                                    "rerun the same command to resume")
        if self.evaluate is not None:
            self._eval(params, step)
        self._save("last", params, opt_state, ref, step)
        ckpt.finish(self.store)
        self.params = params
        return {"steps": step, "final": last, "completions_per_step": cfg.batch_size}

    # ------------------------------------------------------------------ helpers
    def _pad(self, batch_ex: Sequence[Any], pad_id: int) -> dict[str, np.ndarray]:
        lengths = np.array([len(e.input_ids) for e in batch_ex], np.int32)
        b = self.cfg.prompt_bucket
        width = max(b, -(-int(lengths.max()) // b) * b)
        ids = np.full((len(batch_ex), width), pad_id, np.int32)
        for i, e in enumerate(batch_ex):
            ids[i, : len(e.input_ids)] = e.input_ids
        return {"input_ids": ids, "lengths": lengths}

    def _log(self, step: int, steps: int, values: Mapping[str, float]) -> None:
        if self.logger is not None:
            self.logger.write(step, dict(values))
        if jax.process_index() == 0:
            log.info("rl step %d/%d reward %.4f hit@1 %.3f kl %.4g %.1f completions/s", step, steps,
                     values["rl/reward_mean"], values["rl/hit@1"], values["rl/kl_mean"],
                     values["rl/completions_per_sec"])

    def _eval(self, params: Any, step: int) -> None:
        values = {f"eval/{k}": v for k, v in self.evaluate(params, step).items()}
        if self.logger is not None:
            self.logger.eval_step(step, values)

    def _rl_eval(self, rl_step: RLStep, params: Any, ref: Any, step: int, key: jax.Array) -> None:
        eval_key = jax.random.fold_in(jax.random.fold_in(key, 0x7FFFFFFF), step)  # a stream apart from training's
        values = rl_eval(rl_step, params, ref, self.eval_examples, self._pad, self.bundle.mesh,
                         self.cfg.batch_size // self.cfg.num_generations, eval_key)
        if self.logger is not None:
            self.logger.eval_step(step, values)
        if jax.process_index() == 0:
            log.info("rl eval step %d: loss %.4g reward %.4f", step, values["eval/loss"], values["eval/reward"])

    def _meta(self, step: int) -> dict[str, Any]:
        return {"step": step, "data_order": list(self.order.state), "seed": self.seed, "stage": "rl",
                "vocab_size": self.bundle.real_vocab, "beta": self.cfg.beta, "settings": ckpt.normalise(self.settings)}

    def _save(self, name: str, params: Any, opt_state: Any, ref: Any, step: int) -> None:
        if self.store is None:
            return
        ckpt.save_state(self.store, name, params, opt_state, self._meta(step),
                        extra={"ref_params": ref} if ref is not None else None)

    def _rotate(self) -> None:
        ckpt.rotate(self.store, self.cfg.save_total_limit)

    def _restore(self, expected: Any, opt_template: Any, with_ref: bool) -> tuple | None:
        """The run's own newest RL checkpoint (found and checked by the job: stage, settings), if any."""
        own = self.resume
        if own is None:
            return None
        tree, src = own.tree, own.source
        params = S.params_from_tree(tree, expected, src)
        opt_state = S.opt_state_from_tree(tree, S.host(opt_template), src)
        ref = None
        if with_ref:
            if "ref_params" not in tree:
                raise CheckpointError(f"{src}: no reference model saved (was it written with rl.beta=0?)")
            S.check_params(tree["ref_params"], expected, src)
            ref = unflatten_params(dict(tree["ref_params"]))
        return params, opt_state, ref, own.meta


def train_rl(cfg: RLConfig, *, bundle: Any, store: Any | None, decoder: Any, rewards: Mapping[str, Reward],
             examples: Sequence[Any], catalog: SidCatalog, logger: Any | None = None, seed: int = 42,
             tx: optax.GradientTransformation | None = None, evaluate: Callable[[Any, int], dict] | None = None,
             eval_steps: int = 0, eval_examples: Sequence[Any] = (), resume: Any = None,
             settings: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], RLTrainer]:
    """Run the RL stage; returns (summary, trainer) — ``trainer.params`` holds the final weights.

    Args:
        cfg: the ``rl`` section.
        bundle: model bundle (``model``, ``tokenizer``, ``real_vocab``, ``mesh``), weights = the start point.
        store: checkpoint store of this run (where its checkpoints go), or None.
        decoder: the catalog decoder used for beam rollouts (the ``trie`` component).
        rewards: built reward components by name (every ``cfg.rewards`` entry must be there).
        examples: RL prompts (`sidcore.data.rl_tasks.build_rl_examples`).
        tx: optimizer transform (default `default_rl_optimizer`: clip + AdamW on the RL schedule).
        eval_examples: valid-split prompts of the RL eval (``rl.eval_steps``; rollouts, rewards, loss).
        resume: the run's own checkpoint to continue (`sidcore.train.checkpointing.own_resume`), or None.
        settings: the run's identity (`sidcore.run.identity.run_settings`), recorded in each checkpoint.
    """
    if tx is None:
        tx = default_rl_optimizer(cfg, rl_total_steps(cfg, len(examples)))
    trainer = RLTrainer(cfg=cfg, bundle=bundle, tx=tx, store=store,
                        decoder=rollout_decoder(cfg, decoder, catalog, int(bundle.tokenizer.eos_token_id)),
                        rewards=rewards, examples=examples, catalog=catalog, logger=logger, seed=seed,
                        evaluate=evaluate, eval_steps=eval_steps, eval_examples=eval_examples, resume=resume,
                        settings=dict(settings or {}))
    return trainer.run(), trainer
