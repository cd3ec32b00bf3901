"""``sid data ...``: raw interactions -> MiniOneRec ``.inter`` folder -> the split CSVs (docs/data.md)."""

from __future__ import annotations

import json
import re

import click

_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")


def _month(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None or value.lower() == "none":
        return None
    m = _MONTH.match(value)
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise click.BadParameter(f"expected YYYY-MM, got {value!r}")
    return int(m.group(1)), int(m.group(2))


def _echo(stats: dict) -> None:
    click.echo(json.dumps(stats))


def _common_filters(default_start: str | None, default_end: str | None, default_min_items: int):
    def deco(f):
        opts = [
            click.option("--user-k", type=click.IntRange(min=0), default=5, show_default=True,
                         help="Drop users with fewer kept interactions, repeatedly (k-core)."),
            click.option("--item-k", type=click.IntRange(min=0), default=None,
                         help="The items' threshold [default: --user-k, as upstream, which parses "
                              "--item_k and uses user_k for both]."),
            click.option("--start", callback=_month, default=default_start, show_default=True,
                         help="First month of the window, YYYY-MM, UTC ('none': no window)."),
            click.option("--end", callback=_month, default=default_end, show_default=True,
                         help="The window ends at the first second of this month, YYYY-MM, UTC (inclusive)."),
            click.option("--min-items", type=click.IntRange(min=0), default=default_min_items,
                         show_default=True,
                         help="Year back-off: while fewer items remain and the start year is after 1996, "
                              "start one year earlier (0: never)."),
            click.option("--overwrite", is_flag=True, help="Replace existing non-empty output files."),
        ]
        for opt in reversed(opts):
            f = opt(f)
        return f
    return deco


@click.group("data")
def data() -> None:
    """Prepare your own catalog: raw interactions -> .inter folder -> split CSVs."""


@data.command("amazon18")
@click.option("--reviews", required=True, type=click.Path(dir_okay=False),
              help="Reviews JSON lines (NAME.json / NAME_5.json).")
@click.option("--meta", required=True, type=click.Path(dir_okay=False),
              help="Metadata JSON lines (meta_NAME.json).")
@click.option("--dataset", required=True, help="NAME: output folder and file prefix.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Writes OUT/NAME/.")
@_common_filters("1996-10", "2018-11", 3000)
@click.option("--categories-field", default="categories", show_default=True,
              help="Metadata key read for item.json 'categories' (Amazon 2018 files call it 'category'; "
                   "upstream reads 'categories', which leaves the field empty there).")
def amazon18(reviews, meta, dataset, out, user_k, item_k, start, end, min_items, overwrite,
             categories_field) -> None:
    """Amazon Reviews 2018 -> MiniOneRec's .inter folder, as data/amazon18_data_process.py writes it."""
    from sidcore.dataprep.amazon18 import Amazon18Options, prepare_amazon18

    opts = Amazon18Options(user_k=user_k, item_k=item_k, start=start, end=end, min_items=min_items,
                           categories_field=categories_field)
    _echo(prepare_amazon18(reviews, meta, dataset=dataset, out=out, options=opts, overwrite=overwrite))


@data.command("amazon23")
@click.option("--reviews", required=True, type=click.Path(dir_okay=False), help="Reviews JSONL (NAME.jsonl).")
@click.option("--meta", required=True, type=click.Path(dir_okay=False), help="Metadata JSONL (meta_NAME.jsonl).")
@click.option("--dataset", required=True, help="NAME: output folder and file prefix.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Writes OUT/NAME/.")
@_common_filters("1996-01", "2025-01", 0)
def amazon23(reviews, meta, dataset, out, user_k, item_k, start, end, min_items, overwrite) -> None:
    """Amazon Reviews 2023 -> the same .inter folder, as the forks' data/amazon23_data_process.py."""
    from sidcore.dataprep.amazon23 import Amazon23Options, prepare_amazon23

    opts = Amazon23Options(user_k=user_k, item_k=item_k, start=start, end=end, min_items=min_items)
    _echo(prepare_amazon23(reviews, meta, dataset=dataset, out=out, options=opts, overwrite=overwrite))


@data.command("interactions")
@click.option("--interactions", "inter", required=True, type=click.Path(dir_okay=False),
              help="Interactions table: .csv, .tsv or .parquet.")
@click.option("--items", required=True, type=click.Path(dir_okay=False), help="Items table: .csv, .tsv or .parquet.")
@click.option("--dataset", required=True, help="NAME: output folder and file prefix.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Writes OUT/NAME/.")
@click.option("--user-col", default="user_id", show_default=True, help="Interactions: user column.")
@click.option("--item-col", default="item_id", show_default=True, help="Interactions: item column.")
@click.option("--time-col", default="timestamp", show_default=True,
              help="Interactions: time column (numbers in --time-unit, datetimes, or ISO-8601 text).")
@click.option("--time-unit", type=click.Choice(["s", "ms", "us", "ns"]), default="s", show_default=True,
              help="Unit of a numeric time column.")
@click.option("--review-col", default=None, help="Interactions: review text (writes review.json).")
@click.option("--summary-col", default=None, help="Interactions: review summary (writes review.json).")
@click.option("--item-id-col", default=None, help="Items: id column [default: --item-col].")
@click.option("--title-col", default="title", show_default=True, help="Items: title column.")
@click.option("--description-col", default=None, help="Items: description column.")
@click.option("--brand-col", default=None, help="Items: brand column.")
@click.option("--categories-col", default=None, help="Items: categories (text, or a list joined with ',').")
@click.option("--title-rules", type=click.Choice(["plain", "amazon18"]), default="plain", show_default=True,
              help="plain: keep items with a non-empty title; amazon18: upstream's title filter and clean-up.")
@click.option("--sep", "separator", default=None, help="CSV separator [default: ',' ('\\t' for .tsv)].")
@_common_filters(None, None, 0)
def interactions(inter, items, dataset, out, user_col, item_col, time_col, time_unit, review_col, summary_col,
                 item_id_col, title_col, description_col, brand_col, categories_col, title_rules, separator,
                 user_k, item_k, start, end, min_items, overwrite) -> None:
    """Your own logs (CSV/Parquet) -> the same .inter folder (same k-core, window, split, files)."""
    from sidcore.dataprep.interactions import InteractionsOptions, prepare_interactions

    opts = InteractionsOptions(
        user_col=user_col, item_col=item_col, time_col=time_col, time_unit=time_unit, review_col=review_col,
        summary_col=summary_col, item_id_col=item_id_col, title_col=title_col, description_col=description_col,
        brand_col=brand_col, categories_col=categories_col, title_rules=title_rules, separator=separator,
        user_k=user_k, item_k=item_k, start=start, end=end, min_items=min_items)
    _echo(prepare_interactions(inter, items, dataset=dataset, out=out, options=opts, overwrite=overwrite))


@data.command("convert")
@click.option("--inter-dir", required=True, type=click.Path(file_okay=False), help="The .inter folder (OUT/NAME).")
@click.option("--dataset", required=True, help="NAME, the files' prefix.")
@click.option("--index", "index_path", required=True, type=click.Path(dir_okay=False),
              help="index.json: item id -> SID tokens.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The data_dir to write into.")
@click.option("--category", default=None, help="Category name of the output files [default: --dataset].")
@click.option("--keep-longest-only", is_flag=True, help="Train: keep only each user's longest history.")
@click.option("--max-valid-samples", type=click.IntRange(min=0), default=None, help="Sample valid rows down to N.")
@click.option("--max-test-samples", type=click.IntRange(min=0), default=None, help="Sample test rows down to N.")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the sampling (random.seed).")
@click.option("--fix-info-titles", is_flag=True,
              help="Replace TABs and line breaks inside titles by spaces in the info file (upstream writes "
                   "them raw, which breaks the line).")
@click.option("--overwrite", is_flag=True, help="Replace existing non-empty output files.")
def convert_cmd(inter_dir, dataset, index_path, out, category, keep_longest_only, max_valid_samples,
                max_test_samples, seed, fix_info_titles, overwrite) -> None:
    """.inter folder + index.json -> OUT/{train,valid,test,info,index}, as convert_dataset.py (+ index/)."""
    from sidcore.dataprep.convert import ConvertOptions, convert

    opts = ConvertOptions(category=category, keep_longest_only=keep_longest_only,
                          max_valid_samples=max_valid_samples, max_test_samples=max_test_samples, seed=seed,
                          fix_info_titles=fix_info_titles)
    _echo(convert(inter_dir, dataset=dataset, index=index_path, out=out, options=opts, overwrite=overwrite))


__all__ = ["data"]
