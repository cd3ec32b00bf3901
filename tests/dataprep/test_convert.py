"""`sid data convert` equals the transcription of upstream's convert_dataset.py, and its output is a
data_dir that sid's config loader and readers take unchanged (tests/dataprep/reference_convert.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sidcore.cli import build_cli
from sidcore.data import minionerec as mr
from sidcore.dataprep.synthetic import write_amazon18
from sidcore.errors import DataError, SidError
from sidcore.plugins import load_plugins
from tests.dataprep import reference_convert as ref

STEM = "C_5_2016-10-2018-11"


@pytest.fixture(scope="module")
def inter(tmp_path_factory):
    """`sid data amazon18` (through the CLI) on a synthetic category, plus a 3-level index.json."""
    root = tmp_path_factory.mktemp("conv")
    reviews, meta = write_amazon18(root / "raw", n_reviews=8000, seed=7, lone_surrogates=False)
    cli = build_cli(load_plugins(entry_points=False))
    res = CliRunner().invoke(cli, ["data", "amazon18", "--reviews", str(reviews), "--meta", str(meta),
                                   "--dataset", "S", "--out", str(root / "inter"), "--user-k", "3"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout)
    items = json.loads((root / "inter/S/S.item.json").read_text())
    index = {k: [f"<a_{int(k) % 7}>", f"<b_{int(k) // 7 % 5}>", f"<c_{int(k)}>"] for k in items}
    (root / "S.index.json").write_text(json.dumps(index))
    del index[next(iter(items))]  # one item without a SID: rows with it as target are dropped
    (root / "S.partial.index.json").write_text(json.dumps(index))
    return root, stats


@pytest.mark.parametrize("kw", [
    {},
    {"keep_longest_only": True, "max_valid_samples": 50, "max_test_samples": 40, "seed": 3},
])
def test_equals_reference(inter, tmp_path, kw):
    from sidcore.dataprep.convert import ConvertOptions, convert

    root, _ = inter
    index = root / "S.partial.index.json"
    ref.run(root / "inter/S", "S", index, tmp_path / "ref", category="C", **kw)
    convert(root / "inter/S", dataset="S", index=index, out=tmp_path / "sid", options=ConvertOptions(category="C", **kw))
    for rel in [f"{s}/{STEM}.csv" for s in ("train", "valid", "test")] + [f"info/{STEM}.txt"]:
        assert (tmp_path / "ref" / rel).read_bytes() == (tmp_path / "sid" / rel).read_bytes(), rel
    assert (tmp_path / "sid/index/C.index.json").read_bytes() == index.read_bytes()
    assert (tmp_path / "sid/index/C.item.json").read_bytes() == (root / "inter/S/S.item.json").read_bytes()


def test_output_is_a_data_dir_sid_reads(inter, tmp_path):
    from sidcore.config.loading import load_config

    root, stats = inter
    cli = build_cli(load_plugins(entry_points=False))
    args = ["data", "convert", "--inter-dir", str(root / "inter/S"), "--dataset", "S", "--index",
            str(root / "S.index.json"), "--out", str(tmp_path), "--category", "C", "--fix-info-titles"]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    counts = json.loads(res.stdout)
    assert counts["train"] + counts["valid"] + counts["test"] <= stats["train"] + stats["valid"] + stats["test"]
    cfg = load_config(None, load_plugins().registry, overrides=[f"data.data_dir={tmp_path}", "data.category=C"])
    d = cfg.data
    info = mr.read_info(d.info_file)
    index = mr.read_index(d.sid_index_path)
    mr.check_info_matches_index(d.info_file, info, index)
    items = mr.read_items(d.item_meta_path)
    sids = mr.catalog_sids(info)
    for path, n in ((d.train_file, counts["train"]), (d.eval_file, counts["valid"]), (d.test_file, counts["test"])):
        rows = mr.read_csv(path, valid_sids=sids)
        assert len(rows) == n
    assert all(str(r.item_id) in items for r in rows)
    from sidcore.dataprep.convert import _info_safe

    assert [e.title for e in info] == [_info_safe(items[e.item_id].title) for e in info]
    # a second run refuses to overwrite; --overwrite replaces
    res = CliRunner().invoke(cli, args)
    assert isinstance(res.exception, SidError) and "exists and is not empty" in str(res.exception)
    assert CliRunner().invoke(cli, args + ["--overwrite"]).exit_code == 0


def test_bad_inputs(inter, tmp_path):
    from sidcore.dataprep.convert import convert

    root, _ = inter
    bad = tmp_path / "bad.index.json"
    bad.write_text('{"0": "<a_1>"}')
    with pytest.raises(DataError, match=r"bad\.index\.json \[0\]: expected a list"):
        convert(root / "inter/S", dataset="S", index=bad, out=tmp_path / "o")
    with pytest.raises(DataError, match="no T.{train,valid,test}.inter"):
        convert(root / "inter/S", dataset="T", index=root / "S.index.json", out=tmp_path / "o")
    d = tmp_path / "inter"
    d.mkdir()
    for f in Path(root / "inter/S").iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    (d / "S.valid.inter").write_text("h\n1\t2 x\t3\n")
    with pytest.raises(DataError, match=r"S\.valid\.inter:2: expected an integer"):
        convert(d, dataset="S", index=root / "S.index.json", out=tmp_path / "o")
    assert not (tmp_path / "o").exists() or not any(p.is_file() for p in (tmp_path / "o").rglob("*"))
    with pytest.raises(SidError):
        convert(d, dataset="S", index=tmp_path / "missing.json", out=tmp_path / "o")
