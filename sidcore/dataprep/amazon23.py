"""``sid data amazon23``: Amazon Reviews 2023 JSONL (reviews + metadata) -> MiniOneRec's ``.inter`` folder.

Follows ``data/amazon23_data_process.py`` as public MiniOneRec forks carry it (e.g. HJH645/MiniOneRec,
zzzzzap111/MiniOneRec; the same file in each): items are ``parent_asin``; ``timestamp`` in ms is
floored to seconds (missing -> 0); review title/text go through ``clean_text`` (this script's variant,
without the Amazon-2018 second ``&quot;``/``&amp;`` pass) when read and again when review.json is
written; an item is kept when a metadata line gives it a non-empty cleaned title; window and k-core as
Amazon 2018 (no year back-off); item.json values hold title, description (list items cleaned and joined
by a space), features (same), categories (cleaned, joined by ``", "``), brand (= ``store``), details
(as is) and images (hi_res, else large, else thumb), all from the asin's last metadata line; review.json
values hold review, summary, helpful_votes, verified. docs/data.md lists the differences.
"""

from __future__ import annotations

import logging
from pathlib import Path

import attrs
import numpy as np
import polars as pl

from sidcore.dataprep import core
from sidcore.dataprep.amazon18 import _python_texts, layout_files
from sidcore.dataprep.jsonl import read_columns, records_at
from sidcore.dataprep.output import Outputs, dump_indented
from sidcore.dataprep.text import clean_column, clean_text, json_strings
from sidcore.dataprep.writing import write_layout

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class Amazon23Options:
    user_k: int = 5
    item_k: int | None = None
    start: tuple[int, int] | None = (1996, 1)
    end: tuple[int, int] | None = (2025, 1)
    min_items: int = 0
    max_history: int = 10


def _clean(value: object) -> str:
    return clean_text(value, double_unescape=False)


def _joined(value: object, sep: str) -> str:
    """A list: items cleaned and joined; else cleaned (categories: of ``str(value)``, as the script)."""
    if isinstance(value, list):
        return sep.join(_clean(v) for v in value)
    return _clean(value if sep == " " else str(value))


def item_features(meta: dict) -> dict:
    """One item.json value from the asin's last metadata line (the fork's rules)."""
    images = []
    for img in meta.get("images", []) or []:
        if isinstance(img, dict):
            for key in ("hi_res", "large", "thumb"):
                if key in img:
                    images.append(img[key])
                    break
    feats = meta.get("features", [])
    return {
        "title": _clean(_clean(meta.get("title", ""))),
        "description": _joined(meta.get("description", []), " "),
        "features": " ".join(_clean(f) for f in feats) if isinstance(feats, list) else _clean(str(feats)),
        "categories": _joined(meta.get("categories", []), ", "),
        "brand": _clean(meta.get("store", "")),
        "details": meta.get("details", {}),
        "images": images,
    }


def prepare_amazon23(reviews: str | Path, meta: str | Path, *, dataset: str, out: str | Path,
                     options: Amazon23Options = Amazon23Options(), overwrite: bool = False) -> dict[str, int]:
    """Write ``out/dataset/`` from Amazon Reviews 2023 files; returns counts."""
    reviews, meta = Path(reviews), Path(meta)
    folder = Path(out) / dataset
    outputs = Outputs(layout_files(folder, dataset), overwrite=overwrite)
    metas = read_columns(meta, {"parent_asin": pl.String, "title": pl.String}).with_row_index("row")
    metas = metas.filter(pl.col("parent_asin").is_not_null())
    titled_asins = metas.filter(clean_column(metas["title"], double_unescape=False).str.len_chars() > 0)
    log.info("%s: %d metadata lines, %d items with a title", meta, len(metas), titled_asins["parent_asin"].n_unique())
    ev = read_columns(reviews, {"user_id": pl.String, "parent_asin": pl.String, "timestamp": pl.Int64,
                                "title": pl.String, "text": pl.String, "helpful_votes": pl.Int64,
                                "verified_purchase": pl.Boolean})
    ev = ev.with_row_index("__row").filter(pl.col("user_id").is_not_null() & pl.col("parent_asin").is_not_null())
    log.info("%s: %d reviews", reviews, len(ev))
    user, _ = core.codes(ev["user_id"])
    item, n_items = core.codes(ev["parent_asin"])
    ts = (ev["timestamp"].fill_null(0) // 1000).to_numpy()
    titled = np.zeros(n_items, dtype=bool)
    titled[item[ev["parent_asin"].is_in(titled_asins["parent_asin"].implode()).to_numpy()]] = True
    kept, num, first_of_item = core.keep_and_number(user, item, ts, titled, options, reviews)
    item_asin = ev["parent_asin"].gather(kept.rows).gather(first_of_item)
    last_row = metas.group_by("parent_asin").agg(pl.col("row").last())
    rows = pl.DataFrame({"parent_asin": item_asin}).join(last_row, on="parent_asin", how="left",
                                                         maintain_order="left")["row"].to_list()
    records = records_at(meta, set(rows))
    features = {str(i): item_features(records[r]) for i, r in enumerate(rows)}
    kept_ev = ev[kept.rows]
    twice = {name: json_strings(clean_column(clean_column(kept_ev[key], double_unescape=False),
                                             double_unescape=False))
             for name, key in (("review", "text"), ("summary", "title"))}
    _python_texts(reviews, ev["__row"].gather(kept.rows).to_numpy(), twice, {"review": "text", "summary": "title"},
                  double_unescape=False, twice=True)
    review_cols = {**twice, "helpful_votes": kept_ev["helpful_votes"].fill_null(0),
                   "verified": kept_ev["verified_purchase"].fill_null(False)}
    return write_layout(outputs, folder, dataset, num, users=ev["user_id"], items=item_asin,
                        ts_repr=lambda: pl.Series(ts[kept.rows]).cast(pl.String), review_cols=review_cols,
                        item_json=dump_indented(features).encode(), max_history=options.max_history,
                        pre_encoded=("review", "summary"))
