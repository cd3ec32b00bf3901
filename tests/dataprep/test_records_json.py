"""`records_json` writes exactly ``json.dumps({"0": r0, ...}, indent=2)``: string records column-wise,
columns holding lone surrogates value by value, other shapes through json itself."""

from __future__ import annotations

import json

from sidcore.dataprep.output import Joined
from sidcore.dataprep.writing import records_json


def _render(out) -> bytes:
    if isinstance(out, bytes):
        return out
    parts = []
    for piece in out:
        parts.append(piece.sep.join(piece.col.to_list()).encode() if isinstance(piece, Joined) else piece)
    return b"".join(parts)


def _want(records) -> bytes:
    return json.dumps({str(i): r for i, r in enumerate(records)}, indent=2).encode()


def test_plain_strings():
    records = [{"title": "a \"q\" é", "description": "x\ny\t\u2603", "brand": ""},
               {"title": "b", "description": "\\", "brand": "<b>"}]
    assert _render(records_json(records)) == _want(records)


def test_lone_surrogates_in_a_column():
    records = [{"title": "ok", "description": "broken \ud83d emoji"},
               {"title": "also \udc00", "description": "pair \U0001F600 fine"},
               {"title": "", "description": ""}]
    out = records_json(records)
    assert not isinstance(out, bytes)  # the column-wise path, not the whole-object fallback
    assert _render(out) == _want(records)


def test_other_shapes_fall_back_to_json():
    records = [{"title": "a", "n": 1}, {"title": "b", "n": 2}]
    assert _render(records_json(records)) == _want(records)
    assert _render(records_json([])) == _want([])
