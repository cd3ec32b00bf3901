"""`surrogate_rows` finds the rows (numbered over non-blank lines, as the polars reader numbers them)
whose line holds a LONE surrogate escape, with blank and whitespace-only lines anywhere, including
the first line; escape pairs are not lone."""

from __future__ import annotations

import json

from sidcore.dataprep.jsonl import surrogate_rows


def _line(text_escape: str, n: int) -> str:
    return '{"n": %d, "t": "a%sb"}' % (n, text_escape)


def test_rows_counted_over_non_blank_lines(tmp_path):
    lines = [
        "   ",  # whitespace-only first line
        _line("", 0),
        "",
        _line("\\ud83d", 1),  # lone high surrogate: row 1
        " \t",
        _line("\\ud83d\\ude00", 2),  # a pair: polars reads it right
        _line("\\ude00", 3),  # lone low: row 3
    ]
    path = tmp_path / "x.json"
    path.write_text("\n".join(lines) + "\n")
    got = surrogate_rows(path)
    assert sorted(got) == [1, 3]
    assert got[1] == json.loads(lines[3]) and got[3]["n"] == 3


def test_no_blank_lines(tmp_path):
    path = tmp_path / "y.json"
    path.write_text("\n".join([_line("", 0), _line("\\udc00", 1)]) + "\n")
    assert sorted(surrogate_rows(path)) == [1]


def test_broken_line_named_by_physical_line(tmp_path):
    import pytest

    from sidcore.errors import SidError

    path = tmp_path / "z.json"
    path.write_text("\n".join([_line("", 0), "", '{"n": 1, "t": "a\\ud83d"']) + "\n")  # unterminated object
    with pytest.raises(SidError) as err:
        surrogate_rows(path)
    assert "z.json:3: not a JSON line" in str(err.value)


def test_records_at_counts_non_blank_lines(tmp_path):
    from sidcore.dataprep.jsonl import records_at

    cases = {
        "plain": ['{"a": 0}', '{"a": 1}', '{"a": 2}'],
        "blank and whitespace lines": ["", '{"a": 0}', "  \t", '{"a": 1}', "", '{"a": 2}'],
        "crlf": ['{"a": 0}\r', '{"a": 1}\r', '{"a": 2}\r'],
    }
    for name, lines in cases.items():
        for tail in ("\n", "", "\n   "):  # final newline, none, a whitespace-only last line
            path = tmp_path / "m.json"
            path.write_bytes(("\n".join(lines) + tail).encode())
            got = records_at(path, {0, 2, 7})
            assert got == {0: {"a": 0}, 2: {"a": 2}}, (name, repr(tail), got)
    path = tmp_path / "bad.json"
    path.write_text('{"a": 0}\n\n{"a": \n')
    import pytest

    from sidcore.errors import SidError

    with pytest.raises(SidError) as err:
        records_at(path, {1})
    assert "bad.json:3: not a JSON line" in str(err.value)
