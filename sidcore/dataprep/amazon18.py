"""``sid data amazon18``: raw Amazon-2018 reviews + metadata -> MiniOneRec's ``.inter`` folder.

The same files, with the same content, as MiniOneRec's ``data/amazon18_data_process.py``
(``NAME.{train,valid,test}.inter``, ``NAME.inter.json``, ``NAME.item.json``, ``NAME.review.json``,
``NAME.user2id``, ``NAME.item2id``); docs/data.md lists every rule and every difference. The
big columns (reviews) go through polars/numpy; only per-item work (features of kept items) and the
strings that need Python's exact rules (HTML entities, non-ASCII JSON escapes) go through Python.
"""

from __future__ import annotations

import logging
from pathlib import Path

import attrs
import numpy as np
import polars as pl

from sidcore.dataprep import core
from sidcore.dataprep.jsonl import read_columns, records_at, surrogate_rows
from sidcore.dataprep.output import Outputs
from sidcore.dataprep.writing import records_json, utf8_ok, write_layout
from sidcore.dataprep.text import clean_column, clean_text, json_string, json_strings

log = logging.getLogger(__name__)

MAX_TITLE_WORDS = 20


@attrs.frozen(kw_only=True)
class Amazon18Options:
    """Options of `prepare_amazon18` (the CLI flags; defaults are upstream's)."""

    user_k: int = 5
    item_k: int | None = None  # None: user_k (upstream parses --item_k and uses user_k for both)
    start: tuple[int, int] | None = (1996, 10)
    end: tuple[int, int] | None = (2018, 11)
    min_items: int = 3000  # year back-off threshold; 0 disables it
    categories_field: str = "categories"  # Amazon 2018 files name it "category"; upstream reads "categories"
    max_history: int = 10


def title_table(meta: pl.DataFrame) -> pl.DataFrame:
    """asin -> kept title (the last metadata line with a valid title wins), upstream's filters."""
    cleaned = (pl.col("title").str.replace_all("&quot;", '"', literal=True)
               .str.replace_all("&amp;", "&", literal=True).str.strip_chars(" ").str.strip_chars('"'))
    return (
        meta.with_row_index("row")
        .filter(pl.col("title").is_not_null() & ~pl.col("title").str.contains("<span id", literal=True))
        .with_columns(cleaned.alias("title"))
        .filter((pl.col("title").str.len_chars() > 1)
                & (pl.col("title").str.count_matches(" ", literal=True) < MAX_TITLE_WORDS))
        .group_by("asin").agg(pl.col("title").last(), pl.col("row").last())
    )


def clean_title(title: str) -> str:
    """Upstream's title clean-up (the filter already passed)."""
    return title.replace("&quot;", '"').replace("&amp;", "&").strip(" ").strip('"')


def _python_texts(path: Path, kept_rows: np.ndarray, cols: dict[str, pl.Series], fields: dict[str, str],
                  *, double_unescape: bool = True, twice: bool = False) -> None:
    """Overwrite (in place) the JSON-encoded review texts of kept rows whose line holds a surrogate
    escape with Python's own result (json.loads, clean_text, json.dumps)."""
    for row, rec in surrogate_rows(path).items():
        k = int(np.searchsorted(kept_rows, row))
        if k >= len(kept_rows) or kept_rows[k] != row:
            continue
        for name, key in fields.items():
            text = clean_text(rec[key], double_unescape=double_unescape) if key in rec else ""
            if twice:
                text = clean_text(text, double_unescape=double_unescape)
            cols[name].scatter(k, json_string(text))


def item_features(meta: dict, title: str, categories_field: str) -> dict[str, str]:
    """One item.json value from the item's last metadata line (upstream's rules, quirks included)."""
    desc = meta.get("description", "")  # cleaned column-wise by the caller (clean_column)
    desc = str(desc) if desc else ""
    brand = meta.get("brand", "")
    brand = brand.replace("by\n", "").strip() if isinstance(brand, str) else str(brand).strip()
    cats = meta.get(categories_field, [])
    if cats:
        if isinstance(cats[0], list):
            flat: list = []
            for group in cats:
                flat.extend(group)
            cats = flat
        cats = ",".join(str(c).strip() for c in cats if "</span>" not in str(c)).strip()
    else:
        cats = ""
    return {"title": title, "description": desc, "brand": brand, "categories": cats}


def prepare_amazon18(reviews: str | Path, meta: str | Path, *, dataset: str, out: str | Path,
                     options: Amazon18Options = Amazon18Options(), overwrite: bool = False) -> dict[str, int]:
    """Write ``out/dataset/`` from raw Amazon-2018 files; returns counts (users, items, ...)."""
    reviews, meta = Path(reviews), Path(meta)
    folder = Path(out) / dataset
    outputs = Outputs(layout_files(folder, dataset), overwrite=overwrite)
    metas = read_columns(meta, {"asin": pl.String, "title": pl.String}, required=("asin",))
    titles = title_table(metas)
    log.info("%s: %d metadata lines, %d items with a kept title", meta, len(metas), len(titles))
    ev = read_columns(reviews, {"reviewerID": pl.String, "asin": pl.String, "unixReviewTime": pl.Int64,
                                "reviewText": pl.String, "summary": pl.String},
                      required=("reviewerID", "asin", "unixReviewTime"))
    log.info("%s: %d reviews", reviews, len(ev))
    user, _ = core.codes(ev["reviewerID"])
    item, n_items = core.codes(ev["asin"])
    ts = ev["unixReviewTime"].to_numpy()
    titled = np.zeros(n_items, dtype=bool)
    has_title = ev["asin"].is_in(titles["asin"].implode()).to_numpy()
    titled[item[has_title]] = True
    kept, num, first_of_item = core.keep_and_number(user, item, ts, titled, options, reviews)
    item_asin = ev["asin"].gather(kept.rows).gather(first_of_item)
    # item.json: the title kept for the asin, the rest from its LAST metadata line (valid or not)
    last_row = metas.with_row_index("row").group_by("asin").agg(pl.col("row").last())
    lookup = pl.DataFrame({"asin": item_asin}).join(last_row, on="asin", how="left", maintain_order="left")
    lookup = lookup.join(titles.select("asin", pl.col("row").alias("trow")), on="asin", how="left",
                         maintain_order="left")
    rows, trows = lookup["row"].to_list(), lookup["trow"].to_list()
    records = records_at(meta, set(rows) | set(trows))
    # the kept title again from Python's json of its line (polars reads a lone surrogate as U+0000)
    features = [item_features(records[r], clean_title(records[t]["title"]), options.categories_field)
                for r, t in zip(rows, trows)]
    raw_desc = [f["description"] for f in features]
    if all(utf8_ok(d) for d in raw_desc):
        descriptions = clean_column(pl.Series(raw_desc, dtype=pl.String)).to_list()
    else:
        descriptions = [clean_text(d) for d in raw_desc]
    for f, d in zip(features, descriptions):
        f["description"] = d
    review_cols = {"review": json_strings(clean_column(ev["reviewText"].gather(kept.rows))),
                   "summary": json_strings(clean_column(ev["summary"].gather(kept.rows)))}
    _python_texts(reviews, kept.rows, review_cols, {"review": "reviewText", "summary": "summary"})
    stats = write_layout(outputs, folder, dataset, num, users=ev["reviewerID"],
                         items=item_asin, ts_repr=lambda: ev["unixReviewTime"].gather(kept.rows).cast(pl.String),
                         review_cols=review_cols, item_json=records_json(features),
                         max_history=options.max_history, pre_encoded=("review", "summary"))
    stats["start_year"] = kept.start_year
    return stats


def layout_files(folder: Path, dataset: str) -> list[Path]:
    names = [f"{dataset}.{s}.inter" for s in ("train", "valid", "test")]
    names += [f"{dataset}.{s}" for s in ("inter.json", "item.json", "review.json", "user2id", "item2id")]
    return [folder / n for n in names]
