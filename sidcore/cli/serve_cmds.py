"""``sid recommend`` (a file of histories -> ranked items) and ``sid serve`` (the same over HTTP).

Both open a model with `sidcore.serve.load` and decode with `sidcore.serve.engine.Recommender`,
through the run's decoder component and eval's compiled shapes (docs/serving.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from sidcore.errors import SidError, UsageError

log = logging.getLogger(__name__)


def _model_options(f: Any) -> Any:
    opts = [
        click.option("--from", "source", required=True,
                     help="RUN_DIR[#name] (its config and checkpoint, default best else last), an HF folder, or a "
                          "store URI / checkpoint file (those two need --config)."),
        click.option("--config", "config_path", type=click.Path(dir_okay=False),
                     help="Run config for the data (catalog) and decoder sections; default: the run's own."),
        click.option("--top-k", type=int, default=10, show_default=True, help="Items per user."),
        click.option("--num-beams", type=int, default=None,
                     help="Beams decoded per user (>= top-k; default eval.num_beams)."),
        click.option("--exclude-history", is_flag=True,
                     help="Drop items the user already has (from the decoded beams: see docs/serving.md)."),
        click.option("--allow", "allow_file", type=click.Path(dir_okay=False, exists=True),
                     help="File of item ids (one a line): recommend only these."),
        click.option("--deny", "deny_file", type=click.Path(dir_okay=False, exists=True),
                     help="File of item ids (one a line): never recommend these."),
        click.argument("overrides", nargs=-1),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _recommender(state: Any, source: str, config_path: str | None, overrides: tuple[str, ...], *, top_k: int,
                 num_beams: int | None, exclude_history: bool, allow_file: str | None, deny_file: str | None,
                 batch_sizes: list[int] | None = None) -> Any:
    from sidcore.run.compile_cache import enable_compile_cache
    from sidcore.serve.engine import Recommender, read_item_list
    from sidcore.serve.load import load

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UsageError(f"unexpected argument {bad[0]!r} (overrides are KEY=VALUE)")
    loaded = load(source, state.plugins, config=config_path, overrides=overrides)
    enable_compile_cache(loaded.cfg.jax.compile_cache)
    known = [e.item_id for e in loaded.info]
    allow = read_item_list(allow_file, known) if allow_file else None
    deny = read_item_list(deny_file, known) if deny_file else None
    return Recommender(loaded, num_beams=num_beams or loaded.cfg.eval.num_beams, top_k=top_k,
                       exclude_history=exclude_history, allow=allow, deny=deny, batch_sizes=batch_sizes)


@click.command("recommend")
@_model_options
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="Histories: .jsonl (one user object a line) or .csv (MiniOneRec columns); .xz allowed.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Output JSONL.")
@click.option("--history-field", type=click.Choice(["history_item_sid", "history_item_id", "history_item_title"]),
              help="Which history field to read (default: the first present of sid, id, title).")
@click.option("--on-bad-line", type=click.Choice(["error", "skip"]), default="error", show_default=True,
              help="error: stop before decoding anything; skip: write an error record for the line and go on.")
@click.option("--batch-size", type=int, default=None, help="Users per decoder call (default eval.batch_size).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out (and any partial output).")
@click.pass_obj
def recommend(state: Any, source: str, config_path: str | None, top_k: int, num_beams: int | None,
              exclude_history: bool, allow_file: str | None, deny_file: str | None, overrides: tuple[str, ...],
              input_path: str, out_path: str, history_field: str | None, on_bad_line: str, batch_size: int | None,
              overwrite: bool) -> None:
    """Ranked items for every user of a file, in input order (resumable: rerun the same command)."""
    from sidcore.serve.batch import run_recommend

    out = Path(out_path)
    if out.exists() and not overwrite:  # before loading the model: the cheap check first
        raise UsageError(f"--out {out} exists; pass --overwrite to replace it")
    r = _recommender(state, source, config_path, overrides, top_k=top_k, num_beams=num_beams,
                     exclude_history=exclude_history, allow_file=allow_file, deny_file=deny_file,
                     batch_sizes=[batch_size] if batch_size else None)
    counts = run_recommend(r, input_path=Path(input_path), out=out, on_bad_line=on_bad_line, overwrite=overwrite,
                           history_field=history_field, source=source)
    click.echo(f"wrote {out}: {counts['users']} users, {counts['bad']} bad lines skipped"
               + (f", {counts['resumed']} lines from an earlier attempt" if counts["resumed"] else ""))


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise UsageError(f"--batch-buckets {text!r}: expected comma-separated integers") from None
    if not sizes or sizes[0] < 1:
        raise UsageError(f"--batch-buckets {text!r}: expected positive integers")
    return sizes


@click.command("serve")
@_model_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (loopback by default).")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--max-batch", type=int, default=32, show_default=True, help="Most users per decoder call.")
@click.option("--max-wait-ms", type=float, default=5.0, show_default=True,
              help="How long the first queued user waits for others to share its decoder call.")
@click.option("--batch-buckets", default=None,
              help="Compiled batch sizes, comma-separated (default: powers of 2 up to --max-batch).")
@click.option("--max-queue", type=int, default=1024, show_default=True,
              help="Users waiting at most; beyond it requests get 503 + Retry-After.")
@click.option("--max-users", type=int, default=64, show_default=True, help="Users per request at most (413).")
@click.option("--max-history", type=int, default=200, show_default=True,
              help="History items per user at most (413); prompts up to this length are compiled before ready.")
@click.option("--max-body-bytes", type=int, default=1 << 20, show_default=True, help="Request body limit (413).")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True),
              help="File holding a bearer token every request but /healthz must send.")
@click.option("--no-token", is_flag=True, help="Allow a non-loopback --host without --token-file.")
@click.pass_obj
def serve(state: Any, source: str, config_path: str | None, top_k: int, num_beams: int | None, exclude_history: bool,
          allow_file: str | None, deny_file: str | None, overrides: tuple[str, ...], host: str, port: int,
          max_batch: int, max_wait_ms: float, batch_buckets: str | None, max_queue: int, max_users: int,
          max_history: int, max_body_bytes: int, token_file: str | None, no_token: bool) -> None:
    """HTTP JSON API: POST /v1/recommend, GET /healthz, /readyz, /metrics (docs/serving.md)."""
    try:
        from sidcore.serve.server import Limits, check_bind, run_server
    except ImportError as exc:
        raise SidError(f"sid serve needs fastapi, uvicorn and prometheus_client ({exc.name} is missing): "
                       "pip install 'sid[serve]'") from None

    token = Path(token_file).read_text(encoding="utf-8").strip() if token_file else None
    if token_file and not token:
        raise UsageError(f"--token-file {token_file} is empty")
    check_bind(host, token=token, no_token=no_token)
    if max_batch < 1 or max_queue < 1 or max_users < 1 or max_history < 1:
        raise UsageError("--max-batch, --max-queue, --max-users and --max-history must be >= 1")
    sizes = _parse_sizes(batch_buckets) if batch_buckets else [1 << i for i in range(12) if 1 << i < max_batch]
    sizes = sorted({*(s for s in sizes if s <= max_batch), max_batch})
    r = _recommender(state, source, config_path, overrides, top_k=top_k, num_beams=num_beams,
                     exclude_history=exclude_history, allow_file=allow_file, deny_file=deny_file, batch_sizes=sizes)
    limits = Limits(max_batch=max_batch, max_wait_s=max_wait_ms / 1000.0, max_queue=max_queue, max_users=max_users,
                    max_history=max_history, max_body_bytes=max_body_bytes)
    run_server(r, limits, host=host, port=port, token=token)
