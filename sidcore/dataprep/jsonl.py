"""Reading JSON-lines files column-wise (polars), with one-line errors that name the file and line.

The fast path is ``polars.read_ndjson`` with the few fields a step needs (others are skipped while
parsing). When polars refuses a file, Python's ``json`` re-reads it line by line to find the first
bad line, so the error says ``FILE:LINE: ...`` instead of polars' message. Blank lines are skipped
(upstream's ``json.loads`` would stop on them). `line_numbers` maps the row numbers polars gives to
physical line numbers, for messages about a row's content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import polars as pl

from sidcore.errors import DataError, file_error


def require_file(path: Path) -> None:
    if not path.is_file():
        raise file_error(path, "file not found")


def iter_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, parsed object) for every non-blank line; `DataError` on the first bad one."""
    with open(path, encoding="utf-8", errors="strict") as fh:
        try:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise file_error(path, f"not a JSON line ({exc.msg}, column {exc.colno})", line=lineno) from None
                if not isinstance(record, dict):
                    raise file_error(path, f"expected a JSON object, got {type(record).__name__}", line=lineno)
                yield lineno, record
        except UnicodeDecodeError:
            raise file_error(path, "not UTF-8 text") from None


def _locate(path: Path, schema: Mapping[str, pl.DataType], required: tuple[str, ...], cause: str) -> DataError:
    for lineno, record in iter_records(path):
        for key in required:
            if key not in record or record[key] is None:
                return file_error(path, "missing required field", line=lineno, key=key)
        for key, dtype in schema.items():
            value = record.get(key)
            is_int = isinstance(value, int) and not isinstance(value, bool)
            if value is not None and dtype.is_integer() and not is_int:
                return file_error(path, f"expected an integer, got {value!r:.40}", line=lineno, key=key)
    return file_error(path, f"cannot read as JSON lines ({cause.splitlines()[0][:200]})")


def read_columns(path: str | Path, schema: Mapping[str, pl.DataType], *, required: tuple[str, ...] = ()
                 ) -> pl.DataFrame:
    """The `schema` fields of every record of a JSON-lines file, in file order.

    Raises:
        DataError: missing file, a line that is not a JSON object, a `required` field missing or
            null, an integer field holding something else.
    """
    path = Path(path)
    require_file(path)
    try:
        df = pl.read_ndjson(path, schema=dict(schema))
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise _locate(path, schema, required, str(exc)) from None
    for key in required:
        if df[key].null_count():
            raise _locate(path, schema, required, f"field {key} is missing")
    return df


def line_numbers(path: Path) -> list[int]:
    """Physical line number of each non-blank line (the rows `read_columns` returns)."""
    out = []
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                out.append(lineno)
    return out


# a whitespace-only first line / any whitespace-only line (a literal newline first: scanned fast)
_BLANK_FIRST = re.compile(rb"[ \t\r\x0b\x0c]*\n")
_BLANK_LINE = re.compile(rb"\n[ \t\r\x0b\x0c]*\n")


def _line_table(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(starts, ends, lines)``: byte span of every physical line (split on ``\n``, one numpy pass)
    and the physical line index of each non-blank row, in order."""
    nl = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    starts = np.concatenate([[0], nl + 1])
    ends = np.concatenate([nl, [len(data)]])
    if _BLANK_FIRST.match(data) or _BLANK_LINE.search(data):  # whitespace-only lines: check each
        keep = np.array([bool(data[a:z].strip()) for a, z in zip(starts.tolist(), ends.tolist())])
    else:  # only the last segment (after the final newline) can be blank
        keep = np.ones(starts.size, dtype=bool)
        keep[-1] = bool(data[starts[-1]:].strip())
    return starts, ends, np.flatnonzero(keep)


def _records(path: Path, data: bytes, table: tuple[np.ndarray, np.ndarray, np.ndarray],
             rows: Iterable[int]) -> dict[int, dict]:
    """Python-parsed records of `rows` (non-blank-line numbering) sliced from `data`; a broken line
    is a `file_error` naming its physical line."""
    starts, ends, lines = table
    out: dict[int, dict] = {}
    for row in sorted(r for r in set(rows) if 0 <= r < lines.size):
        i = int(lines[row])
        try:
            out[row] = json.loads(data[starts[i]:ends[i]])
        except json.JSONDecodeError as exc:
            raise file_error(path, f"not a JSON line ({exc.msg})", line=i + 1) from None
        except UnicodeDecodeError:
            raise file_error(path, "not UTF-8 text", line=i + 1) from None
    return out


def records_at(path: Path, rows: set[int]) -> dict[int, dict]:
    """Python-parsed records of the given non-blank-line rows (0-based, as `read_columns` counts):
    only the wanted lines are sliced and parsed (no Python loop over every line of the file)."""
    if not rows:
        return {}
    data = Path(path).read_bytes()
    return _records(path, data, _line_table(data), rows)


# a \uD800-\uDFFF escape: polars reads a LONE one as U+0000 (pairs are fine), Python's json keeps
# the lone surrogate
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _is_high(esc: bytes) -> bool:
    return esc[3:4] in b"89abAB"


def _lone(data: bytes, hits: list[int]) -> list[int]:
    """The escapes of `hits` that are not one half of a high+low pair."""
    out, paired = [], set()
    for n, pos in enumerate(hits):
        if pos in paired:
            continue
        esc = data[pos:pos + 6]
        nxt = hits[n + 1] if n + 1 < len(hits) else -1
        if _is_high(esc) and nxt == pos + 6 and not _is_high(data[nxt:nxt + 6]):
            paired.add(nxt)
            continue
        out.append(pos)
    return out


def surrogate_rows(path: Path) -> dict[int, dict]:
    """Python-parsed records of the rows (non-blank-line numbering) whose line holds a surrogate
    escape; those rows' text fields must come from Python's json, not polars."""
    data = Path(path).read_bytes()
    hits = _lone(data, [m.start() for m in _SURROGATE_ESCAPE.finditer(data)])
    if not hits:
        return {}
    table = _line_table(data)
    physical = np.searchsorted(table[0], np.asarray(hits), side="right") - 1  # the line holding each hit
    return _records(path, data, table, np.searchsorted(table[2], physical).tolist())
