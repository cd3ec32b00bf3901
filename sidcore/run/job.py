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
from sidcore.errors import CheckpointError, ConfigError
from sidcore.files import clean_temp_files, failpoint
from sidcore.run.identity import run_settings, stage_of
from sidcore.run.rundir import RunLock, prepare_dir, remove_if_only_lock, write_json, write_run_files
from sidcore.train.checkpointing import own_resume

log = logging.getLogger(__name__)


def flops_per_token(model_cfg: Any) -> float:
    """Training FLOPs per token (6 x non-embedding params; label-only logits are a small extra)."""
    h, f, n = model_cfg.hidden_size, model_cfg.intermediate_size, model_cfg.num_hidden_layers
    q = model_cfg.num_attention_heads * model_cfg.resolved_head_dim  # != h for Qwen3 (explicit head_dim)
    kv = model_cfg.num_key_value_heads * model_cfg.resolved_head_dim
    per_layer = h * q * 2 + h * kv * 2 + 3 * h * f
    return 6.0 * per_layer * n


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
    from sidcore.registry import uri_scheme
    from sidcore.run.assemble import store_uri

    dirs = [Path(cfg.output_dir)]
    uri = store_uri(cfg)
    if uri_scheme(uri) == "file":
        local = Path(uri.removeprefix("file://"))
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
    from sidcore.run.checkpoints import open_checkpoint
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
        rl_job.check_batch(cfg, bundle, catalog)
    settings = run_settings(cfg)
    # SFT and RL alike: the run's own newest checkpoint is restored (checksums verified) and checked
    # against this run's stage and settings here, before any write; a damaged one stops the run.
    resume = own_resume(comps.store, resume_fallback=cfg.train.resume_fallback, stage=stage_of(cfg),
                        settings=settings) if trains or rl else None
    start_from = open_checkpoint(cfg.train.resume_from_checkpoint, plugins.registry) \
        if trains and cfg.train.resume_from_checkpoint else None
    evaluator = _make_evaluator(cfg, bundle, comps, eval_inputs) if eval_inputs else None
    eval_weights = _eval_params(cfg, bundle, comps.store, plugins.registry) \
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
                params = _best_params(cfg, bundle, comps.store)
        if rl:
            params = rl_job.run_rl(cfg, bundle=bundle, comps=comps, catalog=catalog, examples=rl_examples,
                                   rewards=rl_rewards, evaluator=evaluator, logger=logger, summary=summary,
                                   resume=resume, settings=settings)
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


def _expected(bundle: Any) -> Any:
    from sidcore.model.merge import split_params
    from sidcore.train import state as ckpt_state

    _, _, params = split_params(bundle.model)
    return params, ckpt_state.shape_signature(params)


def _eval_params(cfg: RunConfig, bundle: Any, store: Any, registry: Any) -> Any:
    """Weights an eval-only run scores: ``train.resume_from_checkpoint``, else the run's own
    ``use_best_checkpoint ? best : last``, else the loaded ``base_model`` weights; a random init
    only with ``eval.random_weights``. A damaged checkpoint is an error, never skipped."""
    from sidcore.model.sharding import shard_params
    from sidcore.run.checkpoints import open_checkpoint, pick_name
    from sidcore.train import state as ckpt_state

    params, expected = _expected(bundle)
    want = "best" if cfg.eval.use_best_checkpoint else "last"
    opened = None
    if cfg.train.resume_from_checkpoint:
        opened = open_checkpoint(cfg.train.resume_from_checkpoint, registry)
    elif want in store.names() or want in store.damaged():
        name = pick_name(store, store.uri, want)
        tree, meta = store.restore(name)
        opened_src = f"{store.uri}#{name}"
        params = ckpt_state.params_from_tree(tree, expected, opened_src)
        log.info("evaluating weights from %s", opened_src)
        return shard_params(params, bundle.mesh)
    if opened is not None:
        params = ckpt_state.params_from_tree(opened.tree, expected, opened.source)
        log.info("evaluating weights from %s", opened.source)
    elif cfg.base_model and not cfg.train.train_from_scratch:
        log.info("evaluating the weights of base_model=%s", cfg.base_model)
    elif cfg.eval.random_weights:
        log.warning("evaluating RANDOM weights (eval.random_weights=true)")
    else:
        found = ", ".join(store.names()) or "none"
        raise CheckpointError(
            f"nothing to evaluate: {store.uri} has no '{want}' checkpoint (found: {found}) and no base_model weights "
            "are loaded; set train.resume_from_checkpoint=<run dir, store URI or file>, or eval.random_weights=true "
            "to score a random init on purpose")
    return shard_params(params, bundle.mesh)


def _best_params(cfg: RunConfig, bundle: Any, store: Any) -> Any:
    """train_eval with ``eval.use_best_checkpoint``: the best checkpoint this run wrote."""
    from sidcore.model.sharding import shard_params
    from sidcore.run.checkpoints import pick_name
    from sidcore.train import state as ckpt_state

    if "best" not in store.names() and "best" not in store.damaged():
        raise CheckpointError(f"eval.use_best_checkpoint: the run wrote no best checkpoint to {store.uri} "
                              f"(train.save_best_metric={cfg.train.save_best_metric} was never evaluated)")
    name = pick_name(store, store.uri, "best")
    tree, _ = store.restore(name)
    _, expected = _expected(bundle)
    log.info("evaluating weights from %s#best", store.uri)
    return shard_params(ckpt_state.params_from_tree(tree, expected, f"{store.uri}#best"), bundle.mesh)


def _write_eval_outputs(cfg: RunConfig, out: Path, result: Any) -> None:
    if cfg.eval.save_predictions_json:
        write_json(out / "eval_predictions.json", result.records)
    write_json(out / "eval_predictions.metrics.json", result.metrics)


def print_table(metrics: dict[str, Any]) -> None:
    """Every metric family @K on stdout (with the popularity baseline when present)."""
    import click

    from sidcore.eval.metrics_layout import metric_families

    ks = metrics["topk"]
    click.echo(f"{'':<16}" + "".join(f"{'@' + str(k):>9}" for k in ks))
    pop = metrics.get("popularity_baseline")
    rows = [("sid", metrics, "value")] + [("s.e.", metrics, "stderr")] * ("stderr" in metrics)
    rows += [("popular", pop, "value")] * (pop is not None)
    for label, m, what in rows:
        for name in metric_families(metrics):
            table = m.get(name) if what == "value" else m["stderr"].get(name)
            if not table:
                continue
            vals = "".join(f"{table.get(str(k), float('nan')):>9.4f}" for k in ks)
            click.echo(f"{name.upper().replace('_ITEM', '-it') + ' ' + label:<16}{vals}")
    click.echo(f"n={metrics['n_samples']} beams={metrics['n_beams']} invalid={metrics['invalid_prediction_count']}"
               + ("  (s.e.: standard error of sid's value over the n rows)" if "stderr" in metrics else ""))
    if pop is not None and "stderr" in metrics:
        click.echo(beats_line(metrics, pop))


def beats_line(metrics: dict[str, Any], pop: dict[str, Any]) -> str:
    """One line: at which K sid's HR and NDCG beat the popularity baseline by more than one s.e."""
    parts = []
    for fam in ("hr", "ndcg"):
        if fam not in metrics or fam not in pop:
            continue
        ks = [k for k in metrics[fam] if k in pop[fam]]
        ok = [k for k in ks if metrics[fam][k] - pop[fam][k] > metrics["stderr"][fam][k]]
        parts.append(f"{fam.upper()} at {len(ok)}/{len(ks)} K" + (f" (not @{', @'.join(sorted(set(ks) - set(ok), key=int))})"
                                                                    if len(ok) < len(ks) else ""))
    return "beats popularity by more than 1 s.e.: " + "; ".join(parts)
