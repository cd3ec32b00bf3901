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
