"""``sid data interactions``: anyone's logs (CSV / TSV / Parquet) -> the same ``.inter`` folder.

The interactions table needs a user, an item and a time column (names are options); the items table
an id and a title, optionally description, brand and categories. Both are read with polars' lazy
scanners and only the named columns are materialised (streaming engine), so the memory held is the
three key columns plus int codes, well under the input's size for the usual CSV. From there the steps
are the Amazon ones (`sidcore.dataprep.core`): optional window, k-core, numbering, history window,
8:1:1 chronological split, the eight files (review.json only when a review text column is named).
"""

from __future__ import annotations

import logging
from pathlib import Path

import attrs
import numpy as np
import polars as pl

from sidcore.dataprep import core
from sidcore.dataprep.amazon18 import MAX_TITLE_WORDS, layout_files
from sidcore.dataprep.jsonl import require_file
from sidcore.dataprep.output import Outputs
from sidcore.dataprep.text import clean_column
from sidcore.dataprep.writing import records_json, write_layout
from sidcore.errors import DataError, file_error

log = logging.getLogger(__name__)

TIME_UNITS = {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}


@attrs.frozen(kw_only=True)
class InteractionsOptions:
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    time_unit: str = "s"  # of integer / float time columns; datetimes and ISO strings are converted
    review_col: str | None = None
    summary_col: str | None = None
    item_id_col: str | None = None  # items table; default item_col
    title_col: str = "title"
    description_col: str | None = None
    brand_col: str | None = None
    categories_col: str | None = None
    title_rules: str = "plain"  # plain: non-empty after strip; amazon18: upstream's title filter/clean-up
    separator: str | None = None  # CSV: default "," ("\t" for .tsv)
    user_k: int = 5
    item_k: int | None = None
    start: tuple[int, int] | None = None
    end: tuple[int, int] | None = None
    min_items: int = 0
    max_history: int = 10


def scan(path: Path, separator: str | None) -> pl.LazyFrame:
    require_file(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pl.scan_parquet(path)
    if suffix in (".csv", ".tsv", ".txt"):
        sep = separator or ("\t" if suffix == ".tsv" else ",")
        return pl.scan_csv(path, separator=sep, infer_schema=False)  # every column as text; cast below
    raise file_error(path, "expected a .csv, .tsv or .parquet file")


def _collect(path: Path, lf: pl.LazyFrame, cols: list[str]) -> pl.DataFrame:
    names = lf.collect_schema().names()
    missing = [c for c in cols if c not in names]
    if missing:
        raise file_error(path, f"no column {missing[0]!r} (columns: {', '.join(names[:12])})")
    try:
        return lf.select(cols).collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        raise file_error(path, f"cannot read ({str(exc).splitlines()[0][:200]})") from None


def to_seconds(path: Path, col: pl.Series, unit: str) -> np.ndarray:
    """Integer Unix seconds of a time column (ints / floats in `unit`, datetimes, ISO strings)."""
    try:
        if col.dtype == pl.String:
            as_int = col.str.strip_chars().cast(pl.Int64, strict=False)
            if as_int.null_count() == col.null_count():
                col = as_int
            else:
                col = col.str.to_datetime(time_zone="UTC")
        if col.dtype.is_temporal():
            col = col.cast(pl.Datetime("us", "UTC") if col.dtype == pl.Date else col.dtype)
            return (col.dt.epoch("s")).to_numpy().astype(np.int64)
        return (col.cast(pl.Float64) // TIME_UNITS[unit]).cast(pl.Int64).to_numpy()
    except pl.exceptions.PolarsError as exc:
        raise file_error(path, f"time column: {str(exc).splitlines()[0][:160]}", key=col.name) from None


def _titles(items: pl.DataFrame, rules: str) -> pl.Series:
    t = items["title"]
    if rules == "amazon18":
        t = (t.str.replace_all("&quot;", '"', literal=True).str.replace_all("&amp;", "&", literal=True)
             .str.strip_chars(" ").str.strip_chars('"'))
        ok = (~items["title"].str.contains("<span id", literal=True) & (t.str.len_chars() > 1)
              & (t.str.count_matches(" ", literal=True) < MAX_TITLE_WORDS))
    else:
        t = t.str.strip_chars()
        ok = t.str.len_chars() > 0
    return pl.select(pl.when(pl.lit(ok.fill_null(False))).then(pl.lit(t))).to_series().alias("title")


def prepare_interactions(interactions: str | Path, items: str | Path, *, dataset: str, out: str | Path,
                         options: InteractionsOptions = InteractionsOptions(), overwrite: bool = False) -> dict:
    """Write ``out/dataset/`` from a generic interactions table and items table; returns counts."""
    o = options
    inter_path, items_path = Path(interactions), Path(items)
    folder = Path(out) / dataset
    outputs = Outputs(layout_files(folder, dataset), overwrite=overwrite)
    cols = [o.user_col, o.item_col, o.time_col] + [c for c in (o.review_col, o.summary_col) if c]
    ev = _collect(inter_path, scan(inter_path, o.separator), list(dict.fromkeys(cols)))
    for c in (o.user_col, o.item_col, o.time_col):
        if ev[c].null_count():
            row = int(ev[c].is_null().arg_true()[0])
            raise file_error(inter_path, f"empty value in row {row + 1} of the table", key=c)
    user_s, item_s = ev[o.user_col].cast(pl.String), ev[o.item_col].cast(pl.String)
    ts = to_seconds(inter_path, ev[o.time_col], o.time_unit)
    if o.time_col not in (o.user_col, o.item_col, o.review_col, o.summary_col):
        ev = ev.drop(o.time_col)  # its text is no longer needed
    id_col = o.item_id_col or o.item_col
    extra = {"description": o.description_col, "brand": o.brand_col, "categories": o.categories_col}
    icols = [id_col, o.title_col] + [c for c in extra.values() if c]
    it = _collect(items_path, scan(items_path, o.separator), list(dict.fromkeys(icols)))
    it = it.select([pl.col(id_col).cast(pl.String).alias("id"), pl.col(o.title_col).cast(pl.String).alias("title")]
                   + [pl.col(c).alias(k) for k, c in extra.items() if c])
    it = (it.with_columns(_titles(it, o.title_rules)).filter(pl.col("title").is_not_null())
          .unique("id", keep="last", maintain_order=True))  # the last row with a kept title
    titled_ids = it["id"]
    log.info("%s: %d rows; %s: %d items with a title", inter_path, len(ev), items_path, len(titled_ids))
    user, _ = core.codes(user_s)
    item, n_items = core.codes(item_s)
    titled = np.zeros(n_items, dtype=bool)
    titled[item[item_s.is_in(titled_ids.implode()).to_numpy()]] = True
    item_k = o.user_k if o.item_k is None else o.item_k
    kept = core.filter_events(user, item, ts, titled, user_k=o.user_k, item_k=item_k,
                              start=o.start, end=o.end, min_items=o.min_items)
    if len(kept.rows) == 0:
        raise DataError(f"{inter_path}: no interaction is left after the filters ({o.user_k}-core)")
    num = core.number(kept.rows, user, item, ts)
    order = np.argsort(num.iid, kind="stable")
    item_ids = item_s.gather(kept.rows).gather(order[np.r_[0, np.flatnonzero(np.diff(num.iid[order])) + 1]])
    feats = pl.DataFrame({"id": item_ids}).join(it, on="id", how="left", maintain_order="left")
    features = _features(feats)
    review_cols = None
    if o.review_col or o.summary_col:
        kept_ev = ev[kept.rows]
        review_cols = {k: clean_column(kept_ev[c].cast(pl.String)) if c else pl.repeat("", len(kept_ev), eager=True)
                       for k, c in (("review", o.review_col), ("summary", o.summary_col))}
    stats = write_layout(outputs, folder, dataset, num, users=user_s, items=item_ids,
                         ts_repr=lambda: pl.Series(ts[kept.rows]).cast(pl.String), review_cols=review_cols,
                         item_json=records_json(features), max_history=o.max_history)
    if review_cols is None:
        stats["review_json"] = "not written (no --review-col / --summary-col)"
    return stats


def _features(feats: pl.DataFrame) -> list[dict[str, str]]:
    n = len(feats)
    desc = clean_column(feats["description"].cast(pl.String)) if "description" in feats.columns else None
    brand = feats["brand"].cast(pl.String).fill_null("").str.strip_chars() if "brand" in feats.columns else None
    cats = None
    if "categories" in feats.columns:
        c = feats["categories"]
        cats = (c.cast(pl.List(pl.String)).list.join(",") if isinstance(c.dtype, pl.List) else c.cast(pl.String))
        cats = cats.fill_null("")
    empty = [""] * n
    return [{"title": t, "description": d, "brand": b, "categories": k}
            for t, d, b, k in zip(feats["title"].to_list(), desc.to_list() if desc is not None else empty,
                                  brand.to_list() if brand is not None else empty,
                                  cats.to_list() if cats is not None else empty)]
