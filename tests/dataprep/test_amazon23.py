"""`sid data amazon23` equals the transcription of the forks' data/amazon23_data_process.py."""

from __future__ import annotations

import json

import pytest

from sidcore.dataprep.amazon23 import Amazon23Options, prepare_amazon23
from sidcore.dataprep.synthetic import write_amazon23
from tests.dataprep import reference_amazon23 as ref
from tests.dataprep.test_amazon18 import assert_same


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return write_amazon23(tmp_path_factory.mktemp("raw23"), n_reviews=10000, seed=4)


@pytest.mark.parametrize("kw", [{"user_k": 3}, {"user_k": 4, "start": (2000, 6), "end": (2015, 1)}])
def test_equals_reference(raw, tmp_path, kw):
    reviews, meta = raw
    ref.run(reviews, meta, "S", tmp_path / "ref", **kw)
    stats = prepare_amazon23(reviews, meta, dataset="S", out=tmp_path / "sid", options=Amazon23Options(**kw))
    assert_same(tmp_path / "ref", tmp_path / "sid")
    assert stats["events"] > 300
    items = json.loads((tmp_path / "sid/S/S.item.json").read_text())
    assert any(v["images"] and v["images"][0] is None for v in items.values())  # hi_res: null kept
    assert any(v["details"] for v in items.values())


def test_cli_matches_the_library(raw, tmp_path):
    from click.testing import CliRunner

    from sidcore.cli import build_cli
    from sidcore.plugins import load_plugins

    reviews, meta = raw
    prepare_amazon23(reviews, meta, dataset="S", out=tmp_path / "lib", options=Amazon23Options(user_k=3))
    res = CliRunner().invoke(build_cli(load_plugins(entry_points=False)),
                             ["data", "amazon23", "--reviews", str(reviews), "--meta", str(meta), "--dataset", "S",
                              "--out", str(tmp_path / "cli"), "--user-k", "3"], catch_exceptions=False)
    assert res.exit_code == 0 and json.loads(res.stdout)["events"] > 300
    assert_same(tmp_path / "lib", tmp_path / "cli")
