"""One ``sid run`` job in this process: set up, train and/or evaluate, write the run summary.

Run directory layout (reference §7.3 + ours): ``config.resolved.yaml``, ``plugins.json``,
``metrics.jsonl``, ``sft_state_{last,best,step<N>}.*`` (store), tokenizer files,
``eval_predictions.json``, ``eval_predictions.metrics.json``, ``run_summary.json``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import attrs

from sidcore.config import loading
from sidcore.config.schema import RunConfig
from sidcore.plugins import Plugins
from sidcore.runner import atomic_write, build_component as _build

log = logging.getLogger(__name__)


def _write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def flops_per_token(model_cfg: Any) -> float:
    """Training FLOPs per token (6 x non-embedding params; label-only logits are a small extra)."""
    h, f, n = model_cfg.hidden_size, model_cfg.intermediate_size, model_cfg.num_hidden_layers
    kv = model_cfg.num_key_value_heads * model_cfg.resolved_head_dim
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * f
    return 6.0 * per_layer * n


def run_in_process(cfg: RunConfig, plugins: Plugins) -> dict[str, Any]:
    import jax

    from sidcore.assemble import build_model, store_uri
    from sidcore.launching import maybe_initialize_distributed

    maybe_initialize_distributed(cfg.jax.distributed)
    is_main = jax.process_index() == 0
    out = Path(cfg.output_dir)
    if is_main:
        from sidcore.runner import write_run_files

        write_run_files(cfg, plugins)
    started = time.time()
    bundle = build_model(cfg)
    if is_main:
        bundle.tokenizer.save_pretrained(str(out))
    store = _build(plugins, "store", cfg.store, uri=store_uri(cfg))
    summary: dict[str, Any] = {
        "config": loading.to_dict(cfg),
        "token_extension": attrs.asdict(bundle.token_extension),
        "vocab_resize": bundle.vocab_resize,
        "train": None,
        "eval": None,
        "devices": {"count": jax.device_count(), "kind": jax.devices()[0].device_kind,
                    "processes": jax.process_count(), "mesh": dict(bundle.mesh.shape)},
    }
    evaluator = _make_evaluator(cfg, plugins, bundle) if cfg.run_mode != "train" and cfg.eval.enabled else None
    params = None
    if cfg.run_mode in ("train", "train_eval"):
        params = _train(cfg, plugins, bundle, store, evaluator, summary, is_main)
    if evaluator is not None:
        if params is None or cfg.eval.use_best_checkpoint:
            params = _eval_params(cfg, bundle, store, plugins.registry, prefer_best=cfg.eval.use_best_checkpoint)
        result = evaluator.run(params)
        summary["eval"] = {**result.metrics, "timing": result.timing}
        if is_main:
            _write_eval_outputs(cfg, out, result)
            print_table(result.metrics)
    summary["wall_seconds"] = time.time() - started
    if is_main:
        _write_json(out / "run_summary.json", summary)
        log.info("summary_json=%s", out / "run_summary.json")
    return summary


def _make_evaluator(cfg: RunConfig, plugins: Plugins, bundle: Any) -> Any:
    from sidcore.data.catalog import build_catalog
    from sidcore.data.minionerec import read_csv
    from sidcore.data.tasks import build_eval_prompts
    from sidcore.eval.runner import Evaluator, popularity_ranking

    catalog = build_catalog(cfg.data.info_file, cfg.data.sid_index_path, bundle.tokenizer)
    decoder = _build(plugins, "decoder", cfg.decoder, catalog=catalog, eos_id=int(bundle.tokenizer.eos_token_id))
    metrics = [_build(plugins, "metric", m) for m in cfg.metrics]
    prompts = build_eval_prompts(cfg, bundle.tokenizer, split=cfg.eval.split)
    popularity = None
    if cfg.eval.popularity_baseline and cfg.data.train_file:
        ranked = popularity_ranking(read_csv(cfg.data.train_file), cfg.eval.num_beams)
        rest = [s for s in catalog.sids if s not in set(ranked)]
        popularity = (ranked + rest)[: cfg.eval.num_beams]
    return Evaluator(cfg, bundle, decoder, catalog, metrics, prompts, popularity=popularity)


def _train(cfg: RunConfig, plugins: Plugins, bundle: Any, store: Any, evaluator: Any, summary: dict[str, Any],
           is_main: bool) -> Any:
    from sidcore.data.tasks import build_train_examples, build_validation_examples
    from sidcore.train.logging import RunLogger
    from sidcore.train.loop import Trainer, batch_math, total_steps
    from sidcore.train.step import make_schedule_factory

    import optax

    examples = build_train_examples(cfg, bundle.tokenizer)
    val = build_validation_examples(cfg, bundle.tokenizer) if cfg.train.eval_steps >= 0 else []
    math_ = batch_math(cfg, bundle.mesh)
    steps = total_steps(cfg, len(examples), math_)
    make_schedule = make_schedule_factory(cfg.train.lr_schedule, warmup_steps=cfg.train.warmup_steps,
                                          total_steps=steps)
    tx = _build(plugins, "optimizer", cfg.optimizer, learning_rate=cfg.train.learning_rate,
                make_schedule=make_schedule)
    if cfg.train.max_grad_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(cfg.train.max_grad_norm), tx)
    logger = RunLogger(cfg.output_dir, wandb_cfg=cfg.wandb, run_config=loading.to_dict(cfg),
                       flops_per_token=flops_per_token(bundle.hf_config), enabled=is_main,
                       every=cfg.train.logging_steps)
    periodic = evaluator.periodic if (evaluator is not None and cfg.train.save_best_metric != "eval_loss") else None
    trainer = Trainer(cfg=cfg, bundle=bundle, tx=tx, store=store, examples=examples, val_examples=val,
                      logger=logger, evaluate=periodic)
    try:
        summary["train"] = trainer.run()
    finally:
        logger.finish()
    summary["train"]["n_examples"] = len(examples)
    return trainer.params


def _eval_params(cfg: RunConfig, bundle: Any, store: Any, registry: Any, *, prefer_best: bool) -> Any:
    """Weights to evaluate: ``train.resume_from_checkpoint`` / the run's best or last checkpoint / the model."""
    from flax import nnx

    from sidcore.model.sharding import shard_params
    from sidcore.train import state as S

    _, st = nnx.split(bundle.model)
    params = nnx.to_pure_dict(st)
    expected = S.shape_signature(params)
    names = store.names()
    tree, src = None, None
    if cfg.train.resume_from_checkpoint:
        from sidcore.checkpoints import open_checkpoint

        tree, src = open_checkpoint(cfg.train.resume_from_checkpoint, registry)
    elif prefer_best and "best" in names:
        tree, _ = store.restore("best")
        src = f"{store.uri}:best"
    elif cfg.run_mode == "eval" and "last" in names:
        tree, _ = store.restore("last")
        src = f"{store.uri}:last"
    if tree is not None:
        params = S.params_from_tree(tree, expected, src)
        log.info("evaluating weights from %s", src)
    return shard_params(params, bundle.mesh)


def _write_eval_outputs(cfg: RunConfig, out: Path, result: Any) -> None:
    if cfg.eval.save_predictions_json:
        _write_json(out / "eval_predictions.json", result.records)
    _write_json(out / "eval_predictions.metrics.json", result.metrics)


def print_table(metrics: dict[str, Any]) -> None:
    """HR@K / NDCG@K table on stdout (with the popularity baseline when present)."""
    import click

    ks = metrics["topk"]
    click.echo(f"{'':<16}" + "".join(f"{'@' + str(k):>9}" for k in ks))
    rows = [("sid", metrics)]
    if "popularity_baseline" in metrics:
        rows.append(("popular", metrics["popularity_baseline"]))
    for label, m in rows:
        for name in ("hr", "ndcg", "hr_item", "ndcg_item"):
            if name not in m:
                continue
            vals = "".join(f"{m[name].get(str(k), float('nan')):>9.4f}" for k in ks)
            click.echo(f"{name.upper().replace('_ITEM', '-it') + ' ' + label:<16}{vals}")
    click.echo(f"n={metrics['n_samples']} beams={metrics['n_beams']} invalid={metrics['invalid_prediction_count']}")
