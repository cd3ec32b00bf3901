"""`sid data interactions` (generic CSV / Parquet logs): with Amazon-2018's title rules and window it
reproduces `sid data amazon18`'s sequences exactly; options, time formats and errors."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner

from sidcore.cli import build_cli
from sidcore.dataprep.amazon18 import prepare_amazon18
from sidcore.dataprep.interactions import InteractionsOptions, prepare_interactions
from sidcore.dataprep.synthetic import write_amazon18
from sidcore.errors import DataError
from sidcore.plugins import load_plugins

SAME = ("train.inter", "valid.inter", "test.inter", "inter.json", "user2id", "item2id")


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    reviews, meta = write_amazon18(root / "raw", n_reviews=8000, seed=11, lone_surrogates=False)
    prepare_amazon18(reviews, meta, dataset="S", out=root / "a18", )
    ev = pl.read_ndjson(reviews, schema={"reviewerID": pl.String, "asin": pl.String, "unixReviewTime": pl.Int64,
                                         "reviewText": pl.String})
    ev = ev.rename({"reviewerID": "user", "asin": "item", "unixReviewTime": "ts"})
    ev.write_csv(root / "inter.csv")
    ev.with_columns(pl.col("ts") * 1000).write_parquet(root / "inter_ms.parquet")
    ev.with_columns(pl.from_epoch("ts", time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).write_csv(root / "iso.tsv",
                                                                                                   separator="\t")
    items = pl.read_ndjson(meta, schema={"asin": pl.String, "title": pl.String})
    items.write_csv(root / "items.csv")
    return root


@pytest.mark.parametrize("inter,kw", [
    ("inter.csv", {}),
    ("inter_ms.parquet", {"time_unit": "ms"}),
    ("iso.tsv", {}),
])
def test_amazon18_rules_reproduce_amazon18(tables, tmp_path, inter, kw):
    opts = InteractionsOptions(user_col="user", item_col="item", time_col="ts", item_id_col="asin",
                               title_rules="amazon18", start=(1996, 10), end=(2018, 11), **kw)
    prepare_interactions(tables / inter, tables / "items.csv", dataset="S", out=tmp_path, options=opts)
    for f in SAME:
        assert (tmp_path / f"S/S.{f}").read_bytes() == (tables / f"a18/S/S.{f}").read_bytes(), f
    assert not (tmp_path / "S/S.review.json").exists()
    ours = json.loads((tmp_path / "S/S.item.json").read_text())
    theirs = json.loads((tables / "a18/S/S.item.json").read_text())
    assert {k: v["title"] for k, v in ours.items()} == {k: v["title"] for k, v in theirs.items()}


def test_cli_plain_rules_reviews_and_errors(tables, tmp_path):
    cli = build_cli(load_plugins(entry_points=False))
    args = ["data", "interactions", "--interactions", str(tables / "inter.csv"), "--items", str(tables / "items.csv"),
            "--dataset", "G", "--out", str(tmp_path), "--user-col", "user", "--item-col", "item", "--time-col", "ts",
            "--item-id-col", "asin", "--review-col", "reviewText", "--user-k", "3"]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout)
    reviews = json.loads((tmp_path / "G/G.review.json").read_text())
    assert len(reviews) <= stats["events"] and all(v["summary"] == "" for v in reviews.values())
    res = CliRunner().invoke(cli, [a if a != "ts" else "when" for a in args] + ["--overwrite"])
    assert isinstance(res.exception, DataError) and "inter.csv: no column 'when'" in str(res.exception)
    (tmp_path / "items.json").write_text("{}")
    with pytest.raises(DataError, match="expected a .csv, .tsv or .parquet"):
        prepare_interactions(tmp_path / "items.json", tables / "items.csv", dataset="G", out=tmp_path / "x")
