"""`sid data amazon18` equals the plain-Python transcription of upstream's script on a synthetic raw
category that exercises every quirk (tests/dataprep/reference_amazon18.py; sidcore.dataprep.synthetic)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from sidcore.dataprep import text
from sidcore.dataprep.amazon18 import Amazon18Options, prepare_amazon18
from sidcore.dataprep.synthetic import write_amazon18
from sidcore.errors import DataError, SidError
from tests.dataprep import reference_amazon18 as ref

FILES = ("train.inter", "valid.inter", "test.inter", "inter.json", "item.json", "review.json", "user2id", "item2id")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return write_amazon18(tmp_path_factory.mktemp("raw"), n_reviews=12000, seed=3)


def assert_same(a: Path, b: Path, name: str = "S") -> None:
    for f in FILES:
        x, y = (a / name / f"{name}.{f}").read_bytes(), (b / name / f"{name}.{f}").read_bytes()
        if f.endswith(".json"):
            assert json.loads(x) == json.loads(y), f
        assert x == y, f


@pytest.mark.parametrize("kw", [
    {},                                         # upstream defaults: 1996-10 .. 2018-11, 5-core
    {"start": (2016, 10), "user_k": 3},         # year back-off from 2016 down to 1996 (< 3000 items)
    {"start": (1997, 3), "end": (2010, 6)},     # narrow window inside the loop
])
def test_equals_reference(raw, tmp_path, kw):
    reviews, meta = raw
    ref.run(reviews, meta, "S", tmp_path / "ref", **kw)
    stats = prepare_amazon18(reviews, meta, dataset="S", out=tmp_path / "sid", options=Amazon18Options(**kw))
    assert_same(tmp_path / "ref", tmp_path / "sid")
    assert stats["events"] > 300 and stats["items"] > 30 and stats["start_year"] == 1996


def test_the_fixture_has_every_quirk(raw, tmp_path):
    reviews, meta = raw
    recs = [json.loads(x) for x in Path(reviews).read_text().splitlines()]
    metas = [json.loads(x) for x in Path(meta).read_text().splitlines()]
    keys = [(r["reviewerID"], r["asin"], r["unixReviewTime"]) for r in recs]
    assert len(set(keys)) < len(keys)                                          # repeated reviews
    assert len({(r["reviewerID"], r["unixReviewTime"]) for r in recs}) < len(recs)  # ties
    titles = [m.get("title") for m in metas]
    assert None in titles and any("<span id" in (t or "") for t in titles)
    assert any(len((t or "").split(" ")) > 20 for t in titles) and any("&quot;" in (t or "") for t in titles)
    assert {r["asin"] for r in recs} - {m["asin"] for m in metas}              # missing from metadata
    assert len({m["asin"] for m in metas}) < len(metas)                        # repeated metadata lines
    assert any(isinstance(m.get("description"), list) for m in metas)
    assert any(m.get("categories") and isinstance(m["categories"][0], list) for m in metas)
    assert any("</span>" in str(m.get("categories")) for m in metas)
    assert any(m.get("brand", "").startswith("by\n") for m in metas)
    assert any("reviewText" not in r for r in recs) and any("&amp;quot;" in r.get("reviewText", "") for r in recs)
    assert re.search(r"\\ud83d(?!\\ude)", Path(reviews).read_text())  # lone surrogates (polars reads U+0000)
    # and the outputs show them: a repeated (user, item, time) key, histories that hold ties
    prepare_amazon18(reviews, meta, dataset="S", out=tmp_path, options=Amazon18Options(user_k=3))
    assert any("[" in v["description"] for v in json.loads((tmp_path / "S/S.item.json").read_text()).values())


def test_python_whitespace_class_matches_every_code_point():
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    ours = pl.Series(chars).str.contains("^" + text.PY_SPACE_RE + "$").to_list()
    assert ours == [bool(re.fullmatch(r"\s", c)) for c in chars]


TRICKY = ["", None, "  a  b ", "<b>x</b> &amp;quot;q&amp;quot; &nbsp;y", "&lt;i&gt;kept&lt;/i&gt;", "\x1cA\x1fB",
          "caf\u00e9 \U0001F600 \u2028", "&notit; &#x1F600; &#0; &amp", "a<b", "5\" \\ \t\n", "\x7f\x00"]


def test_clean_column_and_json_strings_equal_python():
    col = pl.Series(TRICKY, dtype=pl.String)
    cleaned = text.clean_column(col)
    assert cleaned.to_list() == [text.clean_text(t) for t in TRICKY]
    assert cleaned.to_list() == [ref.clean_text(t) for t in TRICKY]
    assert text.json_strings(cleaned).to_list() == [json.dumps(t) for t in cleaned.to_list()]
    raw_col = pl.Series([t or "" for t in TRICKY])
    assert text.json_strings(raw_col).to_list() == [json.dumps(t or "") for t in TRICKY]


def test_bad_inputs_are_one_line_errors(raw, tmp_path):
    reviews, meta = raw
    bad = tmp_path / "bad.json"
    lines = Path(reviews).read_text().splitlines()[:5]
    bad.write_text("\n".join(lines[:3] + ['{"reviewerID": "u", "asin": "a"}'] + lines[3:]) + "\n")
    with pytest.raises(DataError, match=r"bad\.json:4 \[unixReviewTime\]: missing"):
        prepare_amazon18(bad, meta, dataset="S", out=tmp_path / "o")
    bad.write_text("\n".join(lines[:2] + ['{"reviewerID": "u",'] + lines[2:]) + "\n")
    with pytest.raises(DataError, match=r"bad\.json:3: not a JSON line"):
        prepare_amazon18(bad, meta, dataset="S", out=tmp_path / "o")
    with pytest.raises(DataError, match="nope.json: file not found"):
        prepare_amazon18(tmp_path / "nope.json", meta, dataset="S", out=tmp_path / "o")
    with pytest.raises(DataError, match="no review is left"):
        prepare_amazon18(reviews, meta, dataset="S", out=tmp_path / "o", options=Amazon18Options(user_k=10**6))
    assert not (tmp_path / "o" / "S").exists() or not any((tmp_path / "o" / "S").iterdir())


def test_refuses_to_overwrite_and_writes_all_or_nothing(raw, tmp_path, monkeypatch):
    reviews, meta = raw
    opts = Amazon18Options(start=(2016, 10))
    prepare_amazon18(reviews, meta, dataset="S", out=tmp_path, options=opts)
    before = {p.name: p.read_bytes() for p in (tmp_path / "S").iterdir()}
    with pytest.raises(SidError, match="exists and is not empty"):
        prepare_amazon18(reviews, meta, dataset="S", out=tmp_path, options=opts)
    import sidcore.dataprep.writing as writing

    def boom(*a, **k):
        raise DataError("disk on fire")

    monkeypatch.setattr(writing, "indented_records", boom)  # fails after the first files are staged
    with pytest.raises(DataError, match="disk on fire"):
        prepare_amazon18(reviews, meta, dataset="S", out=tmp_path, options=Amazon18Options(user_k=3),
                         overwrite=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "S").iterdir()} == before  # no temp files left


def test_inter_files_written_in_chunks_are_the_same(raw, tmp_path, monkeypatch):
    import sidcore.dataprep.writing as writing

    reviews, meta = raw
    prepare_amazon18(reviews, meta, dataset="S", out=tmp_path / "one", options=Amazon18Options(user_k=3))
    monkeypatch.setattr(writing, "CHUNK", 97)  # many chunks, uneven last one
    prepare_amazon18(reviews, meta, dataset="S", out=tmp_path / "many", options=Amazon18Options(user_k=3))
    assert_same(tmp_path / "one", tmp_path / "many")
    (tmp_path / "plain").write_text("x")  # output files get open()'s mode, not mkstemp's 0600
    for f in (tmp_path / "many/S").iterdir():
        assert f.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777


def test_cli_errors_are_one_line_with_exit_codes(raw, tmp_path, capsys):
    from sidcore.cli import main

    reviews, meta = raw
    bad = tmp_path / "bad.json"
    bad.write_text('{"reviewerID": "u", "asin": "a", "unixReviewTime": "soon"}\n')
    base = ["data", "amazon18", "--meta", str(meta), "--dataset", "S", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exc:
        main(base + ["--reviews", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exc.value.code == 1 and err == f"Error: {bad}:1 [unixReviewTime]: expected an integer, got 'soon'"
    with pytest.raises(SystemExit) as exc:
        main(base + ["--reviews", str(reviews), "--start", "2018-13"])
    assert exc.value.code == 2 and "expected YYYY-MM" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
