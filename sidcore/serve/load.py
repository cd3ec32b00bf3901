"""Open a trained model for recommendations: ``--from RUN[#name] | HF_FOLDER | STORE_URI[#name]``.

* a run directory (``config.resolved.yaml`` inside): its resolved config, its tokenizer and its
  checkpoint (``#name``, default best else last) -- the same weights ``sid run --run-mode eval``
  would score;
* an HF folder (``config.json`` + safetensors, e.g. ``sid export hf`` output): loaded as
  ``base_model``; the data section (catalog: info + index files) comes from ``--config``;
* any other URI a store serves (``gs://bucket/prefix#last``, a checkpoint file): weights from there,
  everything else from ``--config``.

``KEY=VALUE`` overrides apply on top either way (e.g. ``data.info_file=...`` for another catalog).
The result holds exactly what the evaluator gets in a job: the `ModelBundle`, the params (sharded,
in the eval compute dtype), the full catalog, the info file's titles and the decoder component's
factory, so `sidcore.serve.engine` decodes through the eval path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import attrs

from sidcore.config import loading
from sidcore.config.schema import RunConfig
from sidcore.errors import ConfigError, UsageError
from sidcore.plugins import Plugins

log = logging.getLogger(__name__)


@attrs.define(kw_only=True)
class Loaded:
    """A model ready to decode: config, bundle, params, catalog, titles and where the weights came from."""

    cfg: RunConfig
    bundle: Any  # sidcore.run.assemble.ModelBundle
    params: Any  # params pure dict, sharded over the mesh, compute dtype
    catalog: Any  # SidCatalog of the whole info file
    info: list[Any]  # InfoEntry per info line (titles)
    plugins: Plugins
    source: str


def _run_dir(base: str) -> Path | None:
    p = Path(base)
    return p if p.is_dir() and (p / "config.resolved.yaml").is_file() else None


def resolve_config(source: str, plugins: Plugins, *, config: str | None, overrides: Sequence[str]) -> tuple[
        RunConfig, str]:
    """(the eval-mode config for ``source``, the kind of source: run | hf | store)."""
    from sidcore.run.checkpoints import is_hf_folder, split_uri

    base, _ = split_uri(source)
    run = _run_dir(base)
    kind = "run" if run is not None else "hf" if is_hf_folder(base) else "store"
    extra = ["run_mode=eval"]
    if kind == "run" and config is None:
        path = str(run / "config.resolved.yaml")
        extra += [f"output_dir={run}", f"train.resume_from_checkpoint={source}"]
    elif config is None:
        raise UsageError(f"--from {source}: not a run directory; pass --config (the run config whose data section "
                         "names the catalog: data.info_file, data.sid_index_path)")
    else:
        path = config
        if kind == "hf":
            extra += [f"base_model={base}", "train.train_from_scratch=false", "train.resume_from_checkpoint=null"]
        else:
            extra += [f"train.resume_from_checkpoint={source}"]
    cfg = loading.load_config(path, plugins.registry, overrides=[*extra, *overrides])
    return cfg, kind


def load(source: str, plugins: Plugins, *, config: str | None = None, overrides: Sequence[str] = ()) -> Loaded:
    """Open ``source`` (see the module docstring); every problem is a one-line `SidError`."""
    from sidcore.data.catalog import build_catalog
    from sidcore.data.minionerec import read_info
    from sidcore.eval.evaluator import params_in_compute_dtype
    from sidcore.model.merge import split_params
    from sidcore.model.sharding import shard_params
    from sidcore.run.assemble import build_model
    from sidcore.run.checkpoints import open_checkpoint
    from sidcore.train import state as ckpt_state

    cfg, kind = resolve_config(source, plugins, config=config, overrides=overrides)
    if not cfg.data.info_file or not cfg.data.sid_index_path:
        raise ConfigError("the catalog needs data.info_file and data.sid_index_path (set data.data_dir + "
                          "data.category, or the paths)")
    run = _run_dir(source.partition("#")[0]) if kind == "run" else None
    tok_spec = str(run) if run is not None and (run / "tokenizer.json").is_file() else None
    opened = open_checkpoint(source, plugins.registry) if kind != "hf" else None  # before the model: fail fast
    bundle = build_model(cfg, tokenizer_spec=tok_spec, weights_from_checkpoint=opened is not None)
    _, _, params = split_params(bundle.model)
    if opened is not None:
        params = ckpt_state.params_from_tree(opened.tree, ckpt_state.shape_signature(params), opened.source)
    params = params_in_compute_dtype(shard_params(params, bundle.mesh), cfg.jax.compute_dtype)
    catalog = build_catalog(cfg.data.info_file, cfg.data.sid_index_path, bundle.tokenizer)
    where = opened.source if opened is not None else str(source)
    log.info("recommending with %s (%d catalog SIDs)", where, len(catalog.sids))
    return Loaded(cfg=cfg, bundle=bundle, params=params, catalog=catalog, info=read_info(cfg.data.info_file),
                  plugins=plugins, source=where)
