"""``sid calc``: MiniOneRec ``calc.py`` for any predictions file (registered via ``register_commands``)."""

from __future__ import annotations

import json

import click


@click.command("calc")
@click.option("--path", "pred_paths", multiple=True, type=click.Path(dir_okay=False),
              help="eval_predictions.json (list of {output, predict[, input]}); repeat it, or list more "
                   "files after the options, to score several files (e.g. shards) as one set like upstream.")
@click.option("--item-path", "item_path", required=True, type=click.Path(dir_okay=False),
              help="Catalog info file (<sid>\\t<title>\\t<item_id>); column 0 = valid SIDs.")
@click.option("--topk", default=None,
              help="Comma-separated K values (default 1,3,5,10,20,50, keeping those <= the beam count like "
                   "calc.py; explicit values above it are an error).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics JSON instead of calc.py's text.")
@click.argument("more_paths", nargs=-1, type=click.Path(dir_okay=False))
def calc(pred_paths: tuple[str, ...], item_path: str, topk: str, as_json: bool, more_paths: tuple[str, ...]) -> None:
    """Compute HR@K / NDCG@K / invalid count exactly like MiniOneRec's calc.py (over the records of
    every given file pooled, as merge.py then calc.py do in evaluate.sh; calc.py's own multi-file
    lines divide each file's running total by that file's size)."""
    from sid_metrics.calc import compute, format_report, load_predictions, load_valid_sids
    from sidcore.api import UsageError

    explicit = topk is not None
    topk = topk if explicit else "1,3,5,10,20,50"
    try:
        ks = [int(k) for k in topk.split(",") if k.strip()]
    except ValueError:
        raise UsageError(f"--topk {topk!r}: expected comma-separated integers") from None
    if not ks or any(k <= 0 for k in ks):
        raise UsageError(f"--topk {topk!r}: K values must be positive integers")
    paths = list(pred_paths) + list(more_paths)
    if not paths:
        raise UsageError("sid calc: give at least one predictions file (--path FILE)")
    predictions, targets = [], []
    for path in paths:
        preds, targs = load_predictions(path)
        predictions += preds
        targets += targs
    beams = min((len(p) for p in predictions), default=0)
    over = [k for k in ks if k > beams]
    if over and explicit:
        raise UsageError(f"--topk {over}: more than the {beams} predictions per sample in {', '.join(paths)}")
    result = compute(predictions, targets, load_valid_sids(item_path), ks)
    click.echo(json.dumps(result, indent=2) if as_json else format_report(result))
