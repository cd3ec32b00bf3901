"""``sid export hf``: a run's checkpoint (params only) -> HF folder with config (special-token ids
included), generation_config.json, safetensors and the tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sidcore.config.schema import RunConfig
from sidcore.errors import UsageError

MARKER = ".sid-export"  # written into every export folder: what `--overwrite` may replace


def check_destination(run_dir: Path, out_dir: Path, *, overwrite: bool) -> None:
    """The export rule: never delete anything the export did not write.

    OUT may not be the run directory, inside it or above it; an existing non-empty OUT is refused
    unless ``--overwrite`` *and* it is an earlier sid export (it holds the marker file).
    """
    run, out = run_dir.resolve(), out_dir.resolve()
    if out == run or run in out.parents or out in run.parents:
        where = "is" if out == run else "is inside" if run in out.parents else "holds"
        raise UsageError(f"export destination {out_dir} {where} the run directory {run_dir}; choose a folder "
                         "outside it")
    if out.exists() and not out.is_dir():
        raise UsageError(f"export destination {out_dir} is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(f"export destination {out_dir} exists and is not empty; choose a new folder, or pass "
                             "--overwrite to replace an earlier sid export there")
        if not (out / MARKER).is_file():
            raise UsageError(f"export destination {out_dir} is not an earlier sid export (no {MARKER} file): "
                             "--overwrite replaces only those; choose a new folder")


def export_run(cfg: RunConfig, plugins: Any, out_dir: Path, *, name: str | None = None,
               overwrite: bool = False) -> Path:
    from flax import nnx

    from sidcore.run.assemble import build_model, store_uri
    from sidcore.run.checkpoints import open_checkpoint
    from sidcore.model import export_hf, resize_vocab
    from sidcore.model.hf_params import special_token_ids
    from sidcore.train import state as ckpt_state

    run_dir = Path(cfg.output_dir)
    check_destination(run_dir, out_dir, overwrite=overwrite)
    bundle = build_model(cfg, tokenizer_spec=str(run_dir) if (run_dir / "tokenizer.json").exists() else None)
    _, st = nnx.split(bundle.model)
    expected = ckpt_state.shape_signature(nnx.to_pure_dict(st))
    uri = store_uri(cfg) + (f"#{name}" if name else "")
    opened = open_checkpoint(uri, plugins.registry, params_only=True)
    params = ckpt_state.params_from_tree(opened.tree, expected, opened.source)
    nnx.replace_by_pure_dict(st, params)
    model = nnx.merge(*nnx.split(bundle.model)[:1], st)
    if model.vocab_size != bundle.real_vocab:  # drop sharding padding rows
        model = resize_vocab(model, bundle.real_vocab)
    # special-token ids in config.json and generation_config.json: a plain `generate()` stops at EOS
    ids = special_token_ids(bundle.tokenizer)
    import tempfile

    # Everything goes into a temporary sibling first (weights, tokenizer, marker); export_hf then
    # moves the finished folder into place, replacing an earlier export only after it is complete.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.tok-", dir=out_dir.parent) as tok_dir:
        bundle.tokenizer.save_pretrained(tok_dir)
        extra = {p.name: p.read_bytes() for p in Path(tok_dir).iterdir() if p.is_file()}
    extra[MARKER] = f"sid export of {run_dir} ({opened.source})\n".encode()
    out = export_hf(model, model.cfg, out_dir, extra_config=ids, generation_config=ids, extra_files=extra)
    return Path(out)
