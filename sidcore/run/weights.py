"""Which weights a run scores when it does not train them: ``train.resume_from_checkpoint``, the
run's own ``best`` / ``last``, the loaded ``base_model``, or (only when asked) a random init."""

from __future__ import annotations

import logging
from typing import Any

from sidcore.config.schema import RunConfig
from sidcore.errors import CheckpointError

log = logging.getLogger(__name__)


def expected_params(bundle: Any) -> Any:
    from sidcore.model.merge import split_params
    from sidcore.train import state as ckpt_state

    _, _, params = split_params(bundle.model)
    return params, ckpt_state.shape_signature(params)


def eval_params(cfg: RunConfig, bundle: Any, store: Any, registry: Any) -> Any:
    """Weights an eval-only run scores: ``train.resume_from_checkpoint``, else the run's own
    ``use_best_checkpoint ? best : last``, else the loaded ``base_model`` weights; a random init
    only with ``eval.random_weights``. A damaged checkpoint is an error, never skipped."""
    from sidcore.model.sharding import shard_params
    from sidcore.run.checkpoints import open_checkpoint, pick_name
    from sidcore.train import state as ckpt_state

    params, expected = expected_params(bundle)
    want = "best" if cfg.eval.use_best_checkpoint else "last"
    opened = None
    if cfg.train.resume_from_checkpoint:
        opened = open_checkpoint(cfg.train.resume_from_checkpoint, registry, params_only=True)
    elif want in store.names() or want in store.damaged():
        name = pick_name(store, store.uri, want)
        tree, meta = store.restore(name, params_only=True)
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


def best_params(cfg: RunConfig, bundle: Any, store: Any) -> Any:
    """train_eval with ``eval.use_best_checkpoint``: the best checkpoint this run wrote."""
    from sidcore.model.sharding import shard_params
    from sidcore.run.checkpoints import pick_name
    from sidcore.train import state as ckpt_state

    if "best" not in store.names() and "best" not in store.damaged():
        raise CheckpointError(f"eval.use_best_checkpoint: the run wrote no best checkpoint to {store.uri} "
                              f"(train.save_best_metric={cfg.train.save_best_metric} was never evaluated)")
    name = pick_name(store, store.uri, "best")
    tree, _ = store.restore(name, params_only=True)
    _, expected = expected_params(bundle)
    log.info("evaluating weights from %s#best", store.uri)
    return shard_params(ckpt_state.params_from_tree(tree, expected, f"{store.uri}#best"), bundle.mesh)
