"""``sid baseline sasrec|gru4rec|caser``: upstream ``sasrec.py``'s sequential baselines (sidcore.baselines)."""

from __future__ import annotations

from typing import Any, Callable

import click

from sidcore.baselines.config import MODEL_NAMES, BaselineConfig

_UPSTREAM = {"sasrec": "SASRec", "gru4rec": "GRU", "caser": "Caser"}


def _options(f: Callable) -> Callable:
    d = BaselineConfig()
    opts = [
        click.option("--data-dir", default="bundled-full", show_default=True,
                     help="MiniOneRec data folder, or bundled / bundled-full (the shipped Industrial splits)."),
        click.option("--category", default="Industrial_and_Scientific", show_default=True),
        click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
                     help="Run folder: checkpoint, metrics.jsonl, eval_predictions.metrics.json."),
        click.option("--train-split", type=click.Choice(["train", "valid"]), default="train", show_default=True,
                     help="Rows to train on (valid: when the train split is not released)."),
        click.option("--test-histories", is_flag=True,
                     help="Also train on each test user's items before their first test target (leak-free)."),
        click.option("--select", type=click.Choice(["valid", "holdout", "none"]), default="valid", show_default=True,
                     help="Split for early stopping / best model: valid (upstream), holdout (each test user's last "
                          "pre-test transition, removed from training), none (keep the last epoch)."),
        click.option("--loss-type", type=click.Choice(["bce", "ce"]), default=d.loss_type, show_default=True),
        click.option("--hidden-factor", type=int, default=d.hidden_factor, show_default=True),
        click.option("--dropout-rate", type=float, default=d.dropout_rate, show_default=True),
        click.option("--lr", type=float, default=d.lr, show_default=True),
        click.option("--l2-decay", type=float, default=d.l2_decay, show_default=True),
        click.option("--alpha", type=float, default=d.alpha, show_default=True, help="DRO weight (0: off)."),
        click.option("--beta", type=float, default=d.beta, show_default=True, help="DRO radius."),
        click.option("--batch-size", type=int, default=d.batch_size, show_default=True),
        click.option("--epochs", type=int, default=d.epochs, show_default=True),
        click.option("--early-stop", type=int, default=d.early_stop, show_default=True,
                     help="Evaluations without a better NDCG@20 before stopping."),
        click.option("--eval-num", type=int, default=d.eval_num, show_default=True, help="Evaluate every N epochs."),
        click.option("--seed", type=int, default=d.seed, show_default=True),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _make(name: str) -> click.Command:
    extra = []
    if name == "caser":
        extra = [click.option("--num-filters", type=int, default=16, show_default=True),
                 click.option("--filter-sizes", default="2,3,4", show_default=True,
                              help="Horizontal filter heights, comma-separated.")]
    if name == "sasrec":
        extra = [click.option("--num-heads", type=int, default=1, show_default=True)]

    def command(**kw: Any) -> None:
        from sidcore.baselines.run import run_baseline
        from sidcore.errors import UsageError

        place = {k: kw.pop(k) for k in ("data_dir", "category", "out_dir", "train_split", "test_histories", "select")}
        if "filter_sizes" in kw:
            try:
                kw["filter_sizes"] = tuple(int(x) for x in kw["filter_sizes"].split(",") if x.strip())
            except ValueError:
                raise UsageError(f"--filter-sizes {kw['filter_sizes']!r}: expected integers like 2,3,4") from None
        try:
            cfg = BaselineConfig(model=name, **kw)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"sid baseline {name}: {exc}") from None
        res = run_baseline(cfg, **place)
        click.echo(f"{name}: {res['description']}; best epoch {res['best_epoch']} of {res['epochs_run']}, "
                   f"{res['seconds']:.1f} s")
        t = res["test"]
        click.echo("test (" + str(res["n_test"]) + " rows, full ranking): " + "  ".join(
            f"{k} {t[k]:.4f}" for k in t if k.split("@")[1] in ("1", "5", "10", "20")))
        click.echo(f"wrote {res['record']}")

    for opt in reversed(extra):
        command = opt(command)
    command.__doc__ = (f"Train upstream sasrec.py's {_UPSTREAM[name]} on the MiniOneRec splits and rank every "
                       "item of the test split (HR/NDCG@1..50); the checkpoint feeds the `sasrec` RL reward.")
    return click.command(name)(_options(command))


def make_baseline_group() -> click.Group:
    @click.group("baseline")
    def baseline() -> None:
        """Sequential-recommender baselines (upstream sasrec.py): SASRec, GRU4Rec, Caser."""

    for name in MODEL_NAMES:
        baseline.add_command(_make(name))
    return baseline
