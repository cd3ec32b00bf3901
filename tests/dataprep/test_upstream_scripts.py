"""`sid data amazon18` against upstream's OWN script (not the transcription), when a MiniOneRec
checkout is named by ``SID_MINIONEREC`` (its ``data/amazon18_data_process.py`` imports torch). Run
with ``TZ=UTC`` for upstream, since it takes month boundaries in local time. Skipped otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidcore.dataprep.amazon18 import Amazon18Options, prepare_amazon18
from sidcore.dataprep.synthetic import write_amazon18
from tests.dataprep.test_amazon18 import assert_same

UPSTREAM = os.environ.get("SID_MINIONEREC")
pytestmark = [pytest.mark.torch,
              pytest.mark.skipif(not UPSTREAM, reason="set SID_MINIONEREC to a MiniOneRec checkout")]


@pytest.mark.parametrize("start", [1996, 2015])
def test_amazon18_equals_upstreams_own_script(tmp_path, start):
    pytest.importorskip("torch")
    pytest.importorskip("tqdm")
    reviews, meta = write_amazon18(tmp_path / "raw", n_reviews=20000, seed=21)
    script = Path(UPSTREAM) / "data" / "amazon18_data_process.py"
    subprocess.run([sys.executable, str(script), "--dataset", "S", "--reviews_file", str(reviews),
                    "--metadata_file", str(meta), "--output_path", str(tmp_path / "up"), "--st_year", str(start),
                    "--st_month", "10", "--ed_year", "2018", "--ed_month", "11", "--user_k", "5"],
                   check=True, capture_output=True, env=dict(os.environ, TZ="UTC"))
    prepare_amazon18(reviews, meta, dataset="S", out=tmp_path / "sid", options=Amazon18Options(start=(start, 10)))
    assert_same(tmp_path / "up", tmp_path / "sid")
