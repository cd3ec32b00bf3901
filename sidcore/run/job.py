"""One ``sid run`` job in this process: set up, train and/or evaluate, write the run summary.

Order: ``jax.distributed`` (if asked) -> run files -> model bundle -> eval data + catalog -> train
data + plan -> every component built once (`build_components`) -> `Trainer` -> `Evaluator` ->
outputs. Run directory layout (reference §7.3 + ours): ``config.resolved.yaml``, ``plugins.json``,
``metrics.jsonl``, ``sft_state_{last,best,step<N>}.*`` (store), tokenizer files,
``eval_predictions.json``, ``eval_predictions.metrics.json``, ``run_summary.json``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import attrs

from sidcore import interrupts
from sidcore.config import loading
from sidcore.config.schema import RunConfig
from sidcore.eval.metrics_layout import final_values
from sidcore.plugins import Plugins
from sidcore.errors import ConfigError
from sidcore.files import clean_temp_files, failpoint
from sidcore.model.bundle import flops_per_token
from sidcore.report.table import print_table
from sidcore.run.identity import run_settings, stage_of
from sidcore.run.rundir import RunLock, prepare_dir, remove_if_only_lock, write_json, write_run_files
from sidcore.run.weights import best_params, eval_params
from sidcore.train.checkpointing import own_resume

log = logging.getLogger(__name__)


@attrs.define(kw_only=True)
class EvalInputs:
    """What a decoding eval needs besides the components: catalog, prompts, baseline ranking."""

    catalog: Any
    prompts: list[Any]
    popularity: list[str] | None
    source: str


def run_in_process(cfg: RunConfig, plugins: Plugins) -> dict[str, Any]:
    """Everything that can be checked is checked before the run files are written and before the
    first step: output dir, lock, start weights, data, prompt lengths, components."""
    import jax

    from sidcore.run.compile_cache import enable_compile_cache
    from sidcore.run.distributed import maybe_initialize_distributed

    failpoint("job.startup")
    maybe_initialize_distributed(cfg.jax.distributed)
    enable_compile_cache(cfg.jax.compile_cache)
    is_main = jax.process_index() == 0
    cfg = _resolve_start_weights(cfg)
    if not is_main:
        return _run_locked(cfg, plugins, Path(cfg.output_dir), is_main)
    dirs = _locked_dirs(cfg)
    created = [p for d in dirs for p in (d, *d.parents) if not p.exists()]  # deepest first
    try:
        with contextlib.ExitStack() as stack:
            for d in dirs:  # the run directory, and a local checkpoint_uri elsewhere: one run each
                stack.enter_context(RunLock(prepare_dir(str(d))))
            for path in clean_temp_files(dirs[0]):
                log.info("removed %s (left by an interrupted write)", path.name)
            return _run_locked(cfg, plugins, dirs[0], is_main)
    except BaseException:
        remove_if_only_lock(created)  # a failed start into a new folder leaves no folder behind
        raise


def _locked_dirs(cfg: RunConfig) -> list[Path]:
    """The run directory, plus a local ``checkpoint_uri`` directory when it is another folder."""
    from sidcore.registry import local_path, uri_scheme
    from sidcore.run.assemble import store_uri

    dirs = [Path(cfg.output_dir)]
    uri = store_uri(cfg)
    if uri_scheme(uri) == "file":
        local = Path(local_path(uri))
        if local.resolve() != dirs[0].resolve():
            dirs.append(local)
    return dirs


def _resolve_start_weights(cfg: RunConfig) -> RunConfig:
    """An HF folder as ``train.resume_from_checkpoint`` becomes the model's weights (``base_model``);
    any other value must name an existing checkpoint (checked again, fully, when it is opened)."""
    from sidcore.run.checkpoints import is_hf_folder, resolve

    resume = cfg.train.resume_from_checkpoint
    if not resume:
        return cfg
    if is_hf_folder(resume):
        log.info("train.resume_from_checkpoint=%s is an HF folder: loading it as the model weights", resume)
        return attrs.evolve(cfg, base_model=resume, train=attrs.evolve(
            cfg.train, resume_from_checkpoint=None, train_from_scratch=False))
    resolve(resume)
    return cfg


def _run_locked(cfg: RunConfig, plugins: Plugins, out: Path, is_main: bool) -> dict[str, Any]:
    import jax

    from sidcore.run.assemble import build_model, loads_checkpoint, store_uri
    from sidcore.run.checkpoints import check_own_store, open_checkpoint
    from sidcore.run.components import build_components

    started = time.time()
    bundle = build_model(cfg, weights_from_checkpoint=loads_checkpoint(cfg))
    evaluates = cfg.run_mode != "train" and cfg.eval.enabled
    eval_inputs = _eval_inputs(cfg, bundle) if evaluates else None
    trains = cfg.run_mode in ("train", "train_eval")
    train_data = _train_data(cfg, bundle) if trains else None
    rl = cfg.run_mode == "rl"
    catalog = eval_inputs.catalog if eval_inputs else _catalog(cfg, bundle) if rl else None
    comps = build_components(
        cfg, plugins, store_uri=store_uri(cfg), catalog=catalog, eos_id=int(bundle.tokenizer.eos_token_id),
        make_schedule=train_data[2].make_schedule if train_data else None,
    )
    if rl:
        from sidcore.run import rl_job

        rl_job.load_start_weights(cfg, bundle, plugins.registry)
        rl_rewards = rl_job.build_rewards(cfg, plugins)
        rl_examples = rl_job.rl_examples(cfg, bundle, catalog)
        rl_eval_examples = rl_job.rl_eval_examples(cfg, bundle, catalog)
        rl_job.check_batch(cfg, bundle, catalog, len(rl_examples), len(rl_eval_examples))
    settings = run_settings(cfg)
    if trains or rl:
        check_own_store(store_uri(cfg), cfg.store.name, plugins.registry)
    # SFT and RL alike: the run's own newest checkpoint is restored (checksums verified) and checked
    # against this run's stage and settings here, before any write; a damaged one stops the run.
    resume = own_resume(comps.store, resume_fallback=cfg.train.resume_fallback, stage=stage_of(cfg),
                        settings=settings) if trains or rl else None
    start_from = open_checkpoint(cfg.train.resume_from_checkpoint, plugins.registry) \
        if trains and cfg.train.resume_from_checkpoint else None
    evaluator = _make_evaluator(cfg, bundle, comps, eval_inputs) if eval_inputs else None
    eval_weights = eval_params(cfg, bundle, comps.store, plugins.registry) \
        if evaluator and not trains and not rl else None
    # The run is known to start: only now the run directory's own files are (re)written.
    interrupts.check()
    if is_main:
        write_run_files(cfg, plugins)
        bundle.tokenizer.save_pretrained(str(out))
    summary: dict[str, Any] = {
        "config": loading.to_dict(cfg),
        "token_extension": attrs.asdict(bundle.token_extension),
        "vocab_resize": bundle.vocab_resize,
        "train": None,
        "eval": None,
        "devices": {"count": jax.device_count(), "kind": jax.devices()[0].device_kind,
                    "processes": jax.process_count(), "mesh": dict(bundle.mesh.shape)},
    }
    params = eval_weights
    logger = make_run_logger(cfg, bundle, summary["config"], is_main)  # one logger: train, eval, final
    try:
        interrupts.check()
        if train_data is not None:
            params = _train(cfg, bundle, comps, train_data, evaluator, summary, logger, start_from, resume,
                            settings)
            if evaluator is not None and cfg.eval.use_best_checkpoint:
                params = best_params(cfg, bundle, comps.store)
        if rl:
            params = rl_job.run_rl(cfg, bundle=bundle, comps=comps, catalog=catalog, examples=rl_examples,
                                   rewards=rl_rewards, evaluator=evaluator, logger=logger, summary=summary,
                                   resume=resume, settings=settings, eval_examples=rl_eval_examples)
        if evaluator is not None:
            interrupts.check()
            result = evaluator.run(params)
            interrupts.check()
            summary["eval"] = {**result.metrics, "timing": result.timing}
            if is_main:
                _write_eval_outputs(cfg, out, result)
                print_table(result.metrics)
            logger.final(final_values(result.metrics, result.timing))
        summary["wall_seconds"] = time.time() - started
        logger.final({"final/wall_seconds": summary["wall_seconds"]})
    finally:
        logger.finish()
    if is_main:
        write_json(out / "run_summary.json", summary)
        log.info("summary_json=%s", out / "run_summary.json")
    return summary


def make_run_logger(cfg: RunConfig, bundle: Any, run_config: dict[str, Any], is_main: bool) -> Any:
    """The run's `RunLogger` (metrics.jsonl + W&B), named ``<category>-sid-sft-<timestamp>`` by default."""
    from sidcore.train.run_logger import RunLogger, default_run_name

    return RunLogger(cfg.output_dir, wandb_cfg=cfg.wandb, run_config=run_config,
                     flops_per_token=flops_per_token(bundle.model_config), enabled=is_main,
                     every=cfg.train.logging_steps, run_name=default_run_name(cfg.data.category))


def _catalog(cfg: RunConfig, bundle: Any) -> Any:
    from sidcore.data.catalog import build_catalog

    return build_catalog(cfg.data.info_file, cfg.data.sid_index_path, bundle.tokenizer)


def _eval_inputs(cfg: RunConfig, bundle: Any) -> EvalInputs:
    from sidcore.data.catalog import build_catalog
    from sidcore.data.tasks import build_eval_prompts, training_rows
    from sidcore.eval.metrics_layout import popularity_ranking

    catalog = build_catalog(cfg.data.info_file, cfg.data.sid_index_path, bundle.tokenizer)
    prompts = build_eval_prompts(cfg.data, bundle.tokenizer, split=cfg.eval.split, seed=cfg.seed)
    popularity = None
    if cfg.eval.popularity_baseline and cfg.data.train_file:
        ranked = popularity_ranking(training_rows(cfg.data)[1], cfg.eval.num_beams)
        rest = [s for s in catalog.sids if s not in set(ranked)]
        popularity = (ranked + rest)[: cfg.eval.num_beams]
    source = str(cfg.data.test_file if cfg.eval.split == "test" else cfg.data.eval_file)
    longest = max((len(p.input_ids) for p in prompts), default=0)
    if longest > max(cfg.eval.prefill_buckets):
        raise ConfigError(f"{source}: an eval prompt has {longest} tokens but the largest eval.prefill_buckets "
                          f"entry is {max(cfg.eval.prefill_buckets)}; add a bucket >= {longest} (or lower "
                          f"data.eval_max_len={cfg.data.eval_max_len})")
    return EvalInputs(catalog=catalog, prompts=prompts, popularity=popularity, source=source)


def _make_evaluator(cfg: RunConfig, bundle: Any, comps: Any, inputs: EvalInputs) -> Any:
    from sidcore.eval.evaluator import Evaluator

    return Evaluator(cfg.eval, compute_dtype=cfg.jax.compute_dtype, bundle=bundle, decoder=comps.decoder,
                     catalog=inputs.catalog, metrics=comps.metrics, prompts=inputs.prompts,
                     popularity=inputs.popularity, source=inputs.source)


def _train_data(cfg: RunConfig, bundle: Any) -> tuple[list[Any], list[Any], Any]:
    """(train examples, validation examples, `TrainPlan`) — the plan is computed here, once."""
    import jax

    from sidcore.data.tasks import build_train_examples, build_validation_examples
    from sidcore.train.plan import make_plan

    examples = build_train_examples(cfg.data, cfg.tasks, bundle.tokenizer, seed=cfg.seed)
    val = build_validation_examples(cfg.data, bundle.tokenizer, seed=cfg.seed) if cfg.train.eval_steps >= 0 else []
    plan = make_plan(cfg.train, bundle.mesh, len(examples), jax.process_count())
    return examples, val, plan


def _train(cfg: RunConfig, bundle: Any, comps: Any, train_data: tuple[list[Any], list[Any], Any], evaluator: Any,
           summary: dict[str, Any], logger: Any, start_from: Any, resume: Any, settings: dict[str, Any]) -> Any:
    from sidcore.train.loop import Trainer

    examples, val, plan = train_data
    periodic = evaluator.periodic if (evaluator is not None and cfg.train.save_best_metric != "eval_loss") else None
    tx = trainable_transform(cfg, bundle, comps.optimizer)
    trainer = Trainer(train=cfg.train, data=cfg.data, seed=cfg.seed, plan=plan, bundle=bundle, tx=tx,
                      store=comps.store, examples=examples, val_examples=val, logger=logger, evaluate=periodic,
                      optimizer_name=cfg.optimizer.name, start_from=start_from, resume=resume, settings=settings)
    try:
        summary["train"] = trainer.run()
    finally:
        logger.end_training()
    summary["train"]["n_examples"] = len(examples)
    summary["train"]["telemetry"] = logger.train_stats()
    return trainer.params


def trainable_transform(cfg: RunConfig, bundle: Any, tx: Any) -> Any:
    """``train.trainable``: the optimizer as is (all) or restricted to the SID rows (sid_rows)."""
    if cfg.train.trainable == "all":
        return tx
    from flax import nnx

    from sidcore.data.minionerec import read_index
    from sidcore.data.tokenizer import sid_token_ids, sid_vocabulary
    from sidcore.train.trainable import apply_trainable

    ids = sorted(sid_token_ids(bundle.tokenizer, sid_vocabulary(read_index(cfg.data.sid_index_path))).values())
    _, st = nnx.split(bundle.model)
    log.info("train.trainable=sid_rows: %d SID rows learn, every other parameter is frozen", len(ids))
    return apply_trainable(cfg.train.trainable, tx, nnx.to_pure_dict(st), ids)


def _write_eval_outputs(cfg: RunConfig, out: Path, result: Any) -> None:
    if cfg.eval.save_predictions_json:
        write_json(out / "eval_predictions.json", result.records)
    write_json(out / "eval_predictions.metrics.json", result.metrics)
