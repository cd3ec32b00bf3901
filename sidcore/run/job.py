"""One ``sid run`` job in this process: set up, train and/or evaluate, write the run summary.

Order: ``jax.distributed`` (if asked) -> run files -> model bundle -> eval data + catalog -> train
data + plan -> every component built once (`build_components`) -> `Trainer` -> `Evaluator` ->
outputs. Run directory layout (reference §7.3 + ours): ``config.resolved.yaml``, ``plugins.json``,
``metrics.jsonl``, ``sft_state_{last,best,step<N>}.*`` (store), tokenizer files,
``eval_predictions.json``, ``eval_predictions.metrics.json``, ``run_summary.json``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import attrs

from sidcore.config import loading
from sidcore.config.schema import RunConfig
from sidcore.eval.metrics_layout import final_values
from sidcore.plugins import Plugins
from sidcore.run.rundir import write_json, write_run_files

log = logging.getLogger(__name__)


def flops_per_token(model_cfg: Any) -> float:
    """Training FLOPs per token (6 x non-embedding params; label-only logits are a small extra)."""
    h, f, n = model_cfg.hidden_size, model_cfg.intermediate_size, model_cfg.num_hidden_layers
    kv = model_cfg.num_key_value_heads * model_cfg.resolved_head_dim
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * f
    return 6.0 * per_layer * n


@attrs.define(kw_only=True)
class EvalInputs:
    """What a decoding eval needs besides the components: catalog, prompts, baseline ranking."""

    catalog: Any
    prompts: list[Any]
    popularity: list[str] | None
    source: str


def run_in_process(cfg: RunConfig, plugins: Plugins) -> dict[str, Any]:
    import jax

    from sidcore.run.assemble import build_model, store_uri
    from sidcore.run.components import build_components
    from sidcore.run.distributed import maybe_initialize_distributed

    maybe_initialize_distributed(cfg.jax.distributed)
    is_main = jax.process_index() == 0
    out = Path(cfg.output_dir)
    if is_main:
        write_run_files(cfg, plugins)
    started = time.time()
    bundle = build_model(cfg)
    if is_main:
        bundle.tokenizer.save_pretrained(str(out))
    evaluates = cfg.run_mode != "train" and cfg.eval.enabled
    eval_inputs = _eval_inputs(cfg, bundle) if evaluates else None
    trains = cfg.run_mode in ("train", "train_eval")
    train_data = _train_data(cfg, bundle) if trains else None
    comps = build_components(
        cfg, plugins, store_uri=store_uri(cfg),
        catalog=eval_inputs.catalog if eval_inputs else None, eos_id=int(bundle.tokenizer.eos_token_id),
        make_schedule=train_data[2].make_schedule if train_data else None,
    )
    summary: dict[str, Any] = {
        "config": loading.to_dict(cfg),
        "token_extension": attrs.asdict(bundle.token_extension),
        "vocab_resize": bundle.vocab_resize,
        "train": None,
        "eval": None,
        "devices": {"count": jax.device_count(), "kind": jax.devices()[0].device_kind,
                    "processes": jax.process_count(), "mesh": dict(bundle.mesh.shape)},
    }
    evaluator = _make_evaluator(cfg, bundle, comps, eval_inputs) if eval_inputs else None
    params = None
    logger = make_run_logger(cfg, bundle, summary["config"], is_main)  # one logger: train, eval, final
    try:
        if train_data is not None:
            params = _train(cfg, bundle, comps, train_data, evaluator, summary, logger)
        if evaluator is not None:
            if params is None or cfg.eval.use_best_checkpoint:
                params = _eval_params(cfg, bundle, comps.store, plugins.registry,
                                      prefer_best=cfg.eval.use_best_checkpoint)
            result = evaluator.run(params)
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


def _eval_inputs(cfg: RunConfig, bundle: Any) -> EvalInputs:
    from sidcore.data.catalog import build_catalog
    from sidcore.data.minionerec import read_csv
    from sidcore.data.tasks import build_eval_prompts
    from sidcore.eval.metrics_layout import popularity_ranking

    catalog = build_catalog(cfg.data.info_file, cfg.data.sid_index_path, bundle.tokenizer)
    prompts = build_eval_prompts(cfg.data, bundle.tokenizer, split=cfg.eval.split, seed=cfg.seed)
    popularity = None
    if cfg.eval.popularity_baseline and cfg.data.train_file:
        ranked = popularity_ranking(read_csv(cfg.data.train_file), cfg.eval.num_beams)
        rest = [s for s in catalog.sids if s not in set(ranked)]
        popularity = (ranked + rest)[: cfg.eval.num_beams]
    source = str(cfg.data.test_file if cfg.eval.split == "test" else cfg.data.eval_file)
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
           summary: dict[str, Any], logger: Any) -> Any:
    from sidcore.train.loop import Trainer

    examples, val, plan = train_data
    periodic = evaluator.periodic if (evaluator is not None and cfg.train.save_best_metric != "eval_loss") else None
    tx = trainable_transform(cfg, bundle, comps.optimizer)
    trainer = Trainer(train=cfg.train, data=cfg.data, seed=cfg.seed, plan=plan, bundle=bundle, tx=tx,
                      store=comps.store, examples=examples, val_examples=val, logger=logger, evaluate=periodic,
                      optimizer_name=cfg.optimizer.name)
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


def _eval_params(cfg: RunConfig, bundle: Any, store: Any, registry: Any, *, prefer_best: bool) -> Any:
    """Weights to evaluate: ``train.resume_from_checkpoint`` / the run's best or last checkpoint / the model."""
    from sidcore.model.merge import split_params
    from sidcore.model.sharding import shard_params
    from sidcore.train import state as ckpt_state

    _, _, params = split_params(bundle.model)
    expected = ckpt_state.shape_signature(params)
    names = store.names()
    tree, src = None, None
    if cfg.train.resume_from_checkpoint:
        from sidcore.run.checkpoints import open_checkpoint

        tree, src = open_checkpoint(cfg.train.resume_from_checkpoint, registry)
    elif prefer_best and "best" in names:
        tree, _ = store.restore("best")
        src = f"{store.uri}:best"
    elif cfg.run_mode == "eval" and "last" in names:
        tree, _ = store.restore("last")
        src = f"{store.uri}:last"
    if tree is not None:
        params = ckpt_state.params_from_tree(tree, expected, src)
        log.info("evaluating weights from %s", src)
    return shard_params(params, bundle.mesh)


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
    rows = [("sid", metrics)]
    if "popularity_baseline" in metrics:
        rows.append(("popular", metrics["popularity_baseline"]))
    for label, m in rows:
        for name in metric_families(m):
            if not m[name]:
                continue
            vals = "".join(f"{m[name].get(str(k), float('nan')):>9.4f}" for k in ks)
            click.echo(f"{name.upper().replace('_ITEM', '-it') + ' ' + label:<16}{vals}")
    click.echo(f"n={metrics['n_samples']} beams={metrics['n_beams']} invalid={metrics['invalid_prediction_count']}")
