"""``sid export hf``: a run's checkpoint (params only) -> HF folder with config (special-token ids
included), generation_config.json, safetensors and the tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sidcore.config.schema import RunConfig


def export_run(cfg: RunConfig, plugins: Any, out_dir: Path, *, name: str | None = None) -> Path:
    from flax import nnx

    from sidcore.run.assemble import build_model, store_uri
    from sidcore.run.checkpoints import open_checkpoint
    from sidcore.model import export_hf, resize_vocab
    from sidcore.model.hf_params import special_token_ids
    from sidcore.train import state as ckpt_state

    run_dir = Path(cfg.output_dir)
    bundle = build_model(cfg, tokenizer_spec=str(run_dir) if (run_dir / "tokenizer.json").exists() else None)
    _, st = nnx.split(bundle.model)
    expected = ckpt_state.shape_signature(nnx.to_pure_dict(st))
    uri = store_uri(cfg) + (f"#{name}" if name else "")
    opened = open_checkpoint(uri, plugins.registry)
    params = ckpt_state.params_from_tree(opened.tree, expected, opened.source)
    nnx.replace_by_pure_dict(st, params)
    model = nnx.merge(*nnx.split(bundle.model)[:1], st)
    if model.vocab_size != bundle.real_vocab:  # drop sharding padding rows
        model = resize_vocab(model, bundle.real_vocab)
    # special-token ids in config.json and generation_config.json: a plain `generate()` stops at EOS
    ids = special_token_ids(bundle.tokenizer)
    out = export_hf(model, model.cfg, out_dir, extra_config=ids, generation_config=ids)
    bundle.tokenizer.save_pretrained(str(out))
    return Path(out)
