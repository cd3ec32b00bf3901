"""The ``rl`` run mode inside a job: start weights -> RL prompts -> rewards -> `train_rl` -> params.

Start weights are named the same way as for SFT: ``base_model`` (an HF folder, e.g. an official
MiniOneRec checkpoint) or ``train.resume_from_checkpoint`` (an SFT run dir ``#name``, a store URI, a
checkpoint file, an HF folder). Only the weights are taken from an SFT checkpoint: the RL stage has
its own optimizer, schedule and data order, and a rerun of the same RL command resumes from the RL
run's own checkpoints (weights, optimizer, reference model, data cursor). The job evaluates the
final params with the run's decoder and metrics afterwards, like ``train_eval``.
"""

from __future__ import annotations

import logging
from typing import Any

from sidcore.config import loading
from sidcore.config.schema import RunConfig
from sidcore.errors import ConfigError
from sidcore.plugins import Plugins

log = logging.getLogger(__name__)


def load_start_weights(cfg: RunConfig, bundle: Any, registry: Any) -> None:
    """Put ``train.resume_from_checkpoint``'s weights into the bundle's model (if set)."""
    if not cfg.train.resume_from_checkpoint:
        return
    from flax import nnx

    from sidcore.run.checkpoints import open_checkpoint
    from sidcore.train import state as ckpt_state

    opened = open_checkpoint(cfg.train.resume_from_checkpoint, registry, params_only=True)
    _, st = nnx.split(bundle.model)
    expected = ckpt_state.shape_signature(nnx.to_pure_dict(st))
    nnx.replace_by_pure_dict(st, ckpt_state.params_from_tree(opened.tree, expected, opened.source))
    nnx.update(bundle.model, st)
    log.info("rl: start weights from %s", opened.source)


def build_rewards(cfg: RunConfig, plugins: Plugins) -> dict[str, Any]:
    """Every selected reward component, built with its options (validated like any component)."""
    out = {}
    for i, spec in enumerate(cfg.rl.rewards):
        comp = plugins.registry.get("reward", spec.name)
        options = loading.structure(comp.config, dict(spec.options), f"rl.rewards[{i}] ({spec.name})")
        out[spec.name] = comp.build(options)
    return out


def check_batch(cfg: RunConfig, bundle: Any, catalog: Any, n_examples: int, n_eval: int) -> None:
    """The RL batch splits into groups, replicas and processes, and the cadence keys are RL's
    (before anything is written)."""
    from sidcore.rl.telemetry import check_rl_options
    from sidcore.rl.trainer import check_rl_batch, rl_total_steps

    prompts = check_rl_batch(cfg.rl, bundle.mesh, len(catalog.sids))
    replicas = int(bundle.mesh.shape["dp"] * bundle.mesh.shape["fsdp"])
    check_rl_options(cfg.rl, prompts, replicas, rl_total_steps(cfg.rl, n_examples), n_eval)
    if 0 < cfg.train.eval_steps < 1:
        raise ConfigError(f"run_mode=rl: train.eval_steps={cfg.train.eval_steps} (a share of training) is read by SFT "
                          "only; give the RL decoding eval a whole step count, or use rl.eval_steps for the RL eval")


def rl_examples(cfg: RunConfig, bundle: Any, catalog: Any) -> list[Any]:
    from sidcore.data.consistency import check_items_cover, check_row_ids
    from sidcore.data.minionerec import catalog_sids, read_csv, read_index, read_info, read_items
    from sidcore.data.rl_tasks import build_rl_examples

    d = cfg.data
    for key in ("train_file", "sid_index_path", "info_file"):
        if not getattr(d, key):
            raise ConfigError(f"run_mode=rl: data.{key} is not set (set data.data_dir or the file path)")
    needs_items = any(t in ("item_to_sid", "title_history") for t in cfg.rl.tasks)
    if needs_items and not d.item_meta_path:
        raise ConfigError("run_mode=rl: rl.tasks item_to_sid/title_history need data.item_meta_path")
    valid = catalog_sids(read_info(d.info_file))
    rows = read_csv(d.train_file, valid_sids=valid, skip_empty_history=d.skip_empty_history)
    index = read_index(d.sid_index_path)
    check_row_ids(d.train_file, rows, index)  # item ids agree with their SIDs, as for SFT
    items = read_items(d.item_meta_path) if needs_items else {}
    if needs_items:
        check_items_cover(d.item_meta_path, index, items, needed=[], task="item_to_sid/title_history")
    eval_rows = _valid_rows(cfg, valid) if cfg.rl.bind_targets == "prompt" else []
    return build_rl_examples(
        bundle.tokenizer, tasks=cfg.rl.tasks, train_rows=rows, index=index, items=items, seed=cfg.seed,
        title_history_sample=cfg.rl.title_history_sample, title_history_seed=cfg.rl.title_history_seed,
        preamble=cfg.rl.prompt_preamble, bind=cfg.rl.bind_targets, eval_rows=eval_rows,
        leak=cfg.rl.item_to_sid_upstream_leak, max_len=cfg.rl.max_prompt_len, catalog_sids=frozenset(catalog.sids))


def _valid_rows(cfg: RunConfig, valid: Any) -> list[Any]:
    from sidcore.data.minionerec import read_csv

    if not cfg.data.eval_file:
        raise ConfigError("rl.bind_targets=prompt (upstream's map) and rl.eval_steps read the valid split: set "
                          "data.eval_file (or data.data_dir)")
    return read_csv(cfg.data.eval_file, valid_sids=valid, skip_empty_history=cfg.data.skip_empty_history)


def rl_eval_examples(cfg: RunConfig, bundle: Any, catalog: Any) -> list[Any]:
    """Upstream's RL eval set: ``SidDataset(eval_file)`` prompts (SID history -> next SID), each bound to
    its own row's target; ``rl.eval_max_prompts`` keeps the first N after a seeded shuffle."""
    from sidcore.data.minionerec import catalog_sids, read_info
    from sidcore.data.rl_tasks import build_rl_examples
    from sidcore.data.tasks import sample_like_pandas

    if cfg.rl.eval_steps <= 0:
        return []
    rows = _valid_rows(cfg, catalog_sids(read_info(cfg.data.info_file)))
    rows = sample_like_pandas(rows, cfg.rl.eval_max_prompts, cfg.seed)
    return build_rl_examples(bundle.tokenizer, tasks=["sid_history"], train_rows=rows, index={}, items={},
                             seed=cfg.seed, preamble=cfg.rl.prompt_preamble, max_len=cfg.rl.max_prompt_len,
                             catalog_sids=frozenset(catalog.sids))


def run_rl(cfg: RunConfig, *, bundle: Any, comps: Any, catalog: Any, examples: list[Any], rewards: dict[str, Any],
           evaluator: Any, logger: Any, summary: dict[str, Any], resume: Any, settings: dict[str, Any],
           eval_examples: list[Any]) -> Any:
    """Train with the RL stage; returns the final params (for the job's final eval)."""
    from sidcore.rl.trainer import train_rl

    periodic = evaluator.periodic if (evaluator is not None and cfg.train.eval_steps > 0) else None
    result, trainer = train_rl(cfg.rl, bundle=bundle, store=comps.store, decoder=comps.decoder, rewards=rewards,
                               examples=examples, catalog=catalog, logger=logger, seed=cfg.seed,
                               evaluate=periodic, eval_steps=max(int(cfg.train.eval_steps), 0),
                               eval_examples=eval_examples, resume=resume, settings=settings)
    summary["rl"] = {**result, "n_prompts": len(examples)}
    return trainer.params
