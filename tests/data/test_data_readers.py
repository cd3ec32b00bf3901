"""MiniOneRec file readers: the bundled sample parses; every kind of bad input is a one-line DataError."""

from __future__ import annotations

import json

import attrs
import pytest

from sidcore.data.make_sample import make_sample
from sidcore.data.minionerec import (
    CSV_COLUMNS,
    catalog_sids,
    check_info_matches_index,
    read_csv,
    read_index,
    read_info,
    read_items,
    split_paths,
    split_sid,
)
from sidcore.errors import DataError

HEADER = ",".join(CSV_COLUMNS)
GOOD_ROW = (
    'A1,"[\'t1\', ""it\'s""]",Next,"[3, 4]",5,"[\'<a_1><b_2><c_3>\', \'<a_1><b_2><c_4>\']",<a_1><b_2><c_5>'
)
CATALOG = {"<a_1><b_2><c_3>", "<a_1><b_2><c_4>", "<a_1><b_2><c_5>"}


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_bundled_sample_reads(sample_paths):
    valid = read_csv(sample_paths["valid"])
    test = read_csv(sample_paths["test"])
    assert (len(valid), len(test)) == (300, 200)
    row = valid[1]
    assert row.user_id == "A5382"
    assert row.history_item_id == (3437, 642, 642, 2520)
    assert row.history_item_sid[0] == "<a_224><b_38><c_1>"
    assert row.item_id == 1128 and row.item_sid == "<a_165><b_35><c_57>"
    assert row.item_title == "Loctite Heavy Duty Epoxy Quick Set 8-Fluid Ounce Bottle (1365736)"
    assert row.line == 3
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        row.item_sid = "x"  # type: ignore[misc]
    info = read_info(sample_paths["info"])
    index = read_index(sample_paths["index"])
    items = read_items(sample_paths["items"])
    assert len(info) == len(index) == len(items) == 3686
    assert len(catalog_sids(info)) == 3670
    assert info[0].sid == "<a_236><b_231><c_226>" and info[0].item_id == "0"
    assert info[0].title.startswith("SUPCO SPP6 Relay/Capacitor")
    assert index["0"] == ("<a_236>", "<b_231>", "<c_226>")
    assert items["0"].title == info[0].title and items["0"].description == ""
    check_info_matches_index(sample_paths["info"], info, index)
    # every SID of the sample is in the catalog
    read_csv(sample_paths["valid"], valid_sids=catalog_sids(info))
    read_csv(sample_paths["test"], valid_sids=catalog_sids(info))


def test_csv_literals_quotes_and_empty_history(tmp_path):
    text = HEADER + "\n" + GOOD_ROW + "\nA2,[],T,[],7,[],<a_1><b_2><c_3>\n"
    p = _write(tmp_path, "ok.csv", text)
    rows = read_csv(p, valid_sids=CATALOG)
    assert rows[0].history_item_title == ("t1", "it's")
    assert rows[1].history_item_sid == ()
    assert len(read_csv(p, skip_empty_history=True)) == 1


@pytest.mark.parametrize(
    "body, message",
    [
        ("user_id,item_id\n", r"^{p}:1: expected header user_id,history_item_title,"),
        (HEADER + "\n" + GOOD_ROW + "\nA3,x,y\n", r"^{p}:3: expected 7 fields, got 3$"),
        (
            HEADER + "\n" + GOOD_ROW.replace('"[3, 4]"', '"[3, oops]"'),
            r"^{p}:2 \[history_item_id\]: expected a Python list literal, got '\[3, oops\]'$",
        ),
        (
            HEADER + "\n" + GOOD_ROW.replace('"[3, 4]"', "\"[3, '4']\""),
            r"^{p}:2 \[history_item_id\]: expected a list of int",
        ),
        (HEADER + "\n" + GOOD_ROW.replace('"[3, 4]"', '"[3]"'), r"^{p}:2: history lists differ in length"),
        (HEADER + "\n" + GOOD_ROW.replace(",5,", ",five,"), r"^{p}:2 \[item_id\]: expected an integer"),
        (
            HEADER + "\n" + GOOD_ROW.replace("<c_5>", "<c_9>"),
            r"^{p}:2 \[item_sid\]: SID <a_1><b_2><c_9> is not in the catalog \(info file\)$",
        ),
        (
            HEADER + "\n" + GOOD_ROW.replace("'<a_1><b_2><c_4>'", "'<a_1><b_2><c_8>'"),
            r"^{p}:2 \[history_item_sid\]: SID <a_1><b_2><c_8> is not in the catalog",
        ),
        (
            HEADER + "\n" + GOOD_ROW.replace(",<a_1><b_2><c_5>", ",a1b2c5"),
            r"^{p}:2 \[item_sid\]: expected a SID like <a_1><b_2><c_3>, got 'a1b2c5'$",
        ),
    ],
)
def test_bad_csv(tmp_path, body, message):
    p = _write(tmp_path, "bad.csv", body)
    with pytest.raises(DataError, match=message.format(p=str(p).replace(".", r"\."))) as info:
        read_csv(p, valid_sids=CATALOG)
    assert "\n" not in str(info.value)


def test_missing_files(tmp_path):
    for reader in (read_csv, read_info, read_index, read_items):
        with pytest.raises(DataError, match=r"nope\.x: file not found$"):
            reader(tmp_path / "nope.x")


def test_bad_info(tmp_path):
    p = _write(tmp_path, "info.txt", "<a_1><b_2><c_3>\tT\t0\n<a_1><b_2><c_4> T 1\n")
    with pytest.raises(DataError, match=r"info\.txt:2: expected 3 TAB-separated fields .* got 1$"):
        read_info(p)
    p = _write(tmp_path, "info.txt", "<a_1><b_2><c_3>\tT\t0\textra\n")
    with pytest.raises(DataError, match=r"info\.txt:1: expected 3 TAB-separated fields .* got 4$"):
        read_info(p)
    p = _write(tmp_path, "info.txt", "a_1 b_2\tT\t0\n")
    with pytest.raises(DataError, match=r"info\.txt:1: expected a SID like"):
        read_info(p)


def test_bad_index(tmp_path):
    for bad in ("<a_1><b_2>", ["a_1", "<b_2>"], [], [1, 2]):
        p = _write(tmp_path, "i.index.json", json.dumps({"0": ["<a_1>", "<b_1>"], "5": bad}))
        with pytest.raises(DataError, match=r"i\.index\.json \[5\]: expected a list of SID tokens"):
            read_index(p)
    p = _write(tmp_path, "i.index.json", '{"0": [')
    with pytest.raises(DataError, match=r"i\.index\.json:1: invalid JSON"):
        read_index(p)
    p = _write(tmp_path, "i.index.json", "[1]")
    with pytest.raises(DataError, match="expected a JSON object at top level"):
        read_index(p)


def test_bad_items(tmp_path):
    p = _write(tmp_path, "x.item.json", json.dumps({"7": {"title": "T", "description": ""}}))
    with pytest.raises(DataError, match=r"x\.item\.json \[7\]: expected an object with string keys title"):
        read_items(p)


def test_info_index_disagreement(tmp_path):
    info_p = _write(tmp_path, "info.txt", "<a_1><b_2>\tT\t0\n<a_1><b_3>\tU\t1\n")
    info = read_info(info_p)
    with pytest.raises(
        DataError, match=r"info\.txt \[1\]: SID <a_1><b_3> differs from index\.json's <a_1><b_4>"
    ):
        check_info_matches_index(info_p, info, {"0": ("<a_1>", "<b_2>"), "1": ("<a_1>", "<b_4>")})
    with pytest.raises(DataError, match=r"\[1\]: item id 1 is not in index\.json"):
        check_info_matches_index(info_p, info, {"0": ("<a_1>", "<b_2>")})


def test_split_sid():
    assert split_sid("<a_1><b_22><c_333>") == ("<a_1>", "<b_22>", "<c_333>")
    with pytest.raises(ValueError):
        split_sid("<a_1> <b_2>")


def test_make_sample_is_a_prefix_and_keeps_titles(tmp_path, sample_paths):
    root = make_sample(sample_paths["valid"].parent.parent, tmp_path / "out", valid_rows=10, test_rows=5)
    out = split_paths(root, "Industrial_and_Scientific")
    small = out["valid"].read_bytes()
    assert sample_paths["valid"].read_bytes().startswith(small)
    assert len(read_csv(out["valid"])) == 10 and len(read_csv(out["test"])) == 5
    assert out["index"].read_bytes() == sample_paths["index"].read_bytes()
    assert out["info"].read_bytes() == sample_paths["info"].read_bytes()
    assert read_items(out["items"]) == read_items(sample_paths["items"])
