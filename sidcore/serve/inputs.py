"""User histories in: one JSON object (a ``sid recommend`` JSONL line or an HTTP request user) or one
CSV row, checked and resolved against the catalog.

A user is ``{"user_id": optional str|int, <history field>: [...]}`` with exactly one history field:

* ``history_item_id``: item ids of the info file (strings or integers);
* ``history_item_sid``: SIDs like ``<a_1><b_2><c_3>``;
* ``history_item_title``: exact titles of the info file (a title two items share is refused).

Oldest item first, as in MiniOneRec's CSVs. A CSV has a header naming ``user_id`` (optional) and
at least one history column holding a list literal (``['a', 'b']``), so MiniOneRec's own
train/valid/test CSVs are valid input; other columns are ignored. When several history fields are
present the first of sid, id, title is used (``--history-field`` picks one). Every problem is a
`BadInput` naming the field; the callers add the line number (batch) or answer 422 (HTTP).
"""

from __future__ import annotations

import ast
import json
from typing import Any, Iterator, Mapping, Sequence

import attrs

HISTORY_FIELDS = ("history_item_sid", "history_item_id", "history_item_title")
REQUEST_OPTIONS = ("top_k", "exclude_history")


class BadInput(ValueError):
    """A user record that cannot be used; ``field`` names the key at fault ("" for the whole record)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field, self.message = field, message


class TooLarge(BadInput):
    """A record over a size limit (HTTP 413 rather than 422)."""


@attrs.frozen(kw_only=True)
class Query:
    """One resolved user: catalog rows and SIDs of the history (oldest first)."""

    user_id: str | None
    history_sids: tuple[str, ...]
    history_rows: tuple[int, ...]
    top_k: int | None = None  # None: the server's / command's default
    exclude_history: bool | None = None


@attrs.frozen(kw_only=True)
class Resolver:
    """Maps item ids / SIDs / titles to catalog rows (built once from the catalog and the info file)."""

    sid_row: Mapping[str, int]
    item_sid: Mapping[str, str]
    title_items: Mapping[str, tuple[str, ...]]

    @classmethod
    def build(cls, catalog: Any, info: Sequence[Any]) -> "Resolver":
        titles: dict[str, list[str]] = {}
        for e in info:
            titles.setdefault(e.title, []).append(e.item_id)
        return cls(sid_row={s: i for i, s in enumerate(catalog.sids)}, item_sid={e.item_id: e.sid for e in info},
                   title_items={t: tuple(v) for t, v in titles.items()})

    def sids(self, field: str, values: Sequence[Any]) -> tuple[str, ...]:
        out = []
        for j, v in enumerate(values):
            where = f"{field}[{j}]"
            if field == "history_item_id":
                if isinstance(v, bool) or not isinstance(v, (str, int)):
                    raise BadInput(where, f"expected an item id (string or integer), got {v!r}")
                sid = self.item_sid.get(str(v))
                if sid is None:
                    raise BadInput(where, f"unknown item id {v!r} (not in the catalog's info file)")
            elif not isinstance(v, str):
                raise BadInput(where, f"expected a string, got {v!r}")
            elif field == "history_item_sid":
                sid = v.strip()
                if sid not in self.sid_row:
                    raise BadInput(where, f"unknown SID {v!r} (not in the catalog's info file)")
            else:
                items = self.title_items.get(v, ())
                if len(items) != 1:
                    why = "unknown title" if not items else f"title shared by items {', '.join(items)}"
                    raise BadInput(where, f"{why}: {v[:80]!r}; use history_item_id")
                sid = self.item_sid[items[0]]
            out.append(sid)
        return tuple(out)


def pick_field(keys: Sequence[str], history_field: str | None) -> str:
    if history_field:
        if history_field not in keys:
            raise BadInput(history_field, "missing (chosen with --history-field)")
        return history_field
    for f in HISTORY_FIELDS:
        if f in keys:
            return f
    raise BadInput("", f"no history field: expected one of {', '.join(HISTORY_FIELDS)}")


def parse_user(rec: Any, resolver: Resolver, *, history_field: str | None = None, max_history: int | None = None,
               options: bool = True, prefix: str = "") -> Query:
    """A JSON user object -> `Query`. ``options`` allows the per-request ``top_k``/``exclude_history``.

    Raises:
        TooLarge: a history of more than ``max_history`` items.
        BadInput: wrong type, unknown key, missing/empty history, unknown item, bad ``top_k``.
    """
    if not isinstance(rec, dict):
        raise BadInput(prefix.rstrip("."), f"expected a JSON object, got {type(rec).__name__}")
    allowed = {"user_id", *HISTORY_FIELDS, *(REQUEST_OPTIONS if options else ())}
    for key in rec:
        if key not in allowed:
            raise BadInput(prefix + str(key), f"unknown key (expected {', '.join(sorted(allowed))})")
    field = pick_field(list(rec), history_field)
    values = rec[field]
    if not isinstance(values, list):
        raise BadInput(prefix + field, f"expected a list, got {type(values).__name__}")
    if not values:
        raise BadInput(prefix + field, "empty history: the model recommends from at least one item")
    if max_history is not None and len(values) > max_history:
        raise TooLarge(prefix + field, f"too long: {len(values)} items, the limit is {max_history}")
    user = rec.get("user_id")
    if user is not None and (isinstance(user, bool) or not isinstance(user, (str, int))):
        raise BadInput(prefix + "user_id", f"expected a string or integer, got {user!r}")
    try:
        sids = resolver.sids(field, values)
    except BadInput as exc:
        raise BadInput(prefix + exc.field, exc.message) from None
    top_k, excl = rec.get("top_k"), rec.get("exclude_history")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise BadInput(prefix + "top_k", f"expected a positive integer, got {top_k!r}")
    if excl is not None and not isinstance(excl, bool):
        raise BadInput(prefix + "exclude_history", f"expected true or false, got {excl!r}")
    return Query(user_id=None if user is None else str(user), history_sids=sids,
                 history_rows=tuple(resolver.sid_row[s] for s in sids), top_k=top_k, exclude_history=excl)


def json_records(lines: Iterator[str]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object or `BadInput`) for each non-blank JSONL line."""
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            yield n, BadInput("", f"malformed JSON: {exc.msg} (column {exc.colno})")


def csv_records(lines: Iterator[str]) -> Iterator[tuple[int, Any]]:
    """(line number, record dict or `BadInput`) for each CSV data row (list columns parsed)."""
    import csv

    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    if not any(h in HISTORY_FIELDS for h in header):
        yield 1, BadInput("", f"CSV header has no history column ({', '.join(HISTORY_FIELDS)})")
        return
    keep = [i for i, h in enumerate(header) if h in (*HISTORY_FIELDS, "user_id")]
    start = reader.line_num + 1
    for fields in reader:
        if not fields:
            start = reader.line_num + 1
            continue
        if len(fields) != len(header):
            yield start, BadInput("", f"expected {len(header)} fields, got {len(fields)}")
        else:
            rec: dict[str, Any] = {}
            bad = None
            for i in keep:
                key, text = header[i], fields[i]
                if key == "user_id":
                    rec[key] = text
                    continue
                try:
                    rec[key] = ast.literal_eval(text)
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    bad = BadInput(key, f"expected a list literal, got {text[:60]!r}")
                    break
            yield start, bad or rec
        start = reader.line_num + 1
