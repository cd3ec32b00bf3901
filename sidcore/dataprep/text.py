"""Upstream's text clean-up and Python's JSON string encoding, column-wise.

`clean_text` is MiniOneRec's ``clean_text`` (Amazon-2018 flavour: tags removed, entities decoded,
``&quot;``/``&amp;`` replaced once more, whitespace runs collapsed to one space, stripped).
`clean_column` computes the same thing for a whole polars column: the tag regex and the whitespace
collapse run in polars, and only the strings that hold a ``&`` (where ``html.unescape``'s HTML5
rules matter) go through Python. Python's ``\\s`` also matches U+001C..U+001F, which the Rust regex
``\\s`` does not, so the collapse uses an explicit class (a test checks it against every code point).

`json_strings` encodes a column the way ``json.dump`` does with its default ``ensure_ascii=True``:
printable-ASCII strings are escaped in polars, the rest by Python's own C encoder, so the bytes equal
``json.dump``'s.
"""

from __future__ import annotations

import html
import json
import re

import polars as pl

TAG_RE = r"<[^>]+>"
# Python's str \s (str.isspace): Rust's \s plus the four ASCII separators U+001C..U+001F.
PY_SPACE_RE = r"[\s\x1c-\x1f]+"
# the runs PY_SPACE_RE would change: two or more whitespace characters, or one that is not " "
_SPACE_FIX_RE = r"[\s\x1c-\x1f]{2,}|[[\s\x1c-\x1f]&&[^ ]]"
_PRINTABLE_ASCII = r"^[\x20-\x7e]*$"
# Entities whose html.unescape result is fixed, and that no other entity name starts with once the
# ";" is included: a string whose every "&" starts one of these, or is followed by a space or ends
# the string (html.unescape leaves those), is decoded by one non-overlapping literal replace pass.
SIMPLE_ENTITIES = {"&amp;": "&", "&quot;": '"', "&lt;": "<", "&gt;": ">", "&nbsp;": "\xa0",
                   "&#39;": "'", "&#34;": '"'}
_SIMPLE_RE = "|".join(re.escape(e) for e in SIMPLE_ENTITIES)

_TAG = re.compile(TAG_RE)
_SPACE = re.compile(r"\s+")
_encode = json.encoder.encode_basestring_ascii  # the C encoder json.dump uses for str


def clean_text(text: object, *, double_unescape: bool = True) -> str:
    """Upstream ``clean_text``: falsy -> ``""``; else tags removed from ``str(text)``, entities
    decoded, (Amazon-2018 only: ``&quot;`` and ``&amp;`` replaced again), whitespace collapsed,
    stripped."""
    if not text:
        return ""
    out = html.unescape(_TAG.sub("", str(text)))
    if double_unescape:
        out = out.replace("&quot;", '"').replace("&amp;", "&")
    return _SPACE.sub(" ", out).strip()


def _finish_with_entities(text: str, double_unescape: bool) -> str:
    out = html.unescape(text)
    if double_unescape:
        out = out.replace("&quot;", '"').replace("&amp;", "&")
    return _SPACE.sub(" ", out).strip()


def _decode_entities(col: pl.Series, double_unescape: bool) -> pl.Series:
    """Entity decoding of tag-stripped strings that hold a ``&``: one polars replace pass where only
    `SIMPLE_ENTITIES` occur, Python's html.unescape (+ whitespace collapse) elsewhere."""
    amps = col.str.count_matches("&", literal=True)
    simple = (amps == col.str.count_matches(_SIMPLE_RE) + col.str.count_matches("& ", literal=True)
              + col.str.ends_with("&").cast(pl.UInt32))
    out = col.str.replace_many(list(SIMPLE_ENTITIES), list(SIMPLE_ENTITIES.values()))
    if double_unescape:
        out = out.str.replace_all("&quot;", '"', literal=True).str.replace_all("&amp;", "&", literal=True)
    out = out.str.replace_all(PY_SPACE_RE, " ").str.strip_chars(" ")
    if not simple.all():
        idx = (~simple).arg_true()
        fixed = [_finish_with_entities(t, double_unescape) for t in col.gather(idx).to_list()]
        out = out.scatter(idx, pl.Series(fixed, dtype=pl.String))
    return out


def _where(col: pl.Series, pattern: str, fn, *, literal: bool = True) -> pl.Series:
    """`fn` applied only to the values that contain `pattern` (most values need nothing)."""
    hit = col.str.contains(pattern, literal=literal)
    if not hit.any():
        return col
    idx = hit.arg_true()
    return col.clone().scatter(idx, fn(col.gather(idx)))  # scatter works in place: keep `col` intact


def clean_column(col: pl.Series, *, double_unescape: bool = True) -> pl.Series:
    """`clean_text` of every value of a String column (null -> ``""``), in bulk."""
    stripped = _where(col.fill_null(""), "<", lambda c: c.str.replace_all(TAG_RE, ""))
    has_amp = stripped.str.contains("&", literal=True)
    out = _where(stripped, _SPACE_FIX_RE, lambda c: c.str.replace_all(_SPACE_FIX_RE, " "), literal=False)
    out = out.str.strip_chars(" ")
    if has_amp.any():
        idx = has_amp.arg_true()
        out = out.scatter(idx, _decode_entities(stripped.gather(idx), double_unescape))
    return out.alias(col.name)


def json_strings(col: pl.Series) -> pl.Series:
    """``json.dumps(value)`` (ensure_ascii) of every value of a String column without nulls."""
    plain = col.str.contains(_PRINTABLE_ASCII)
    body = _where(col, r'["\\]', lambda c: c.str.replace_all("\\", "\\\\", literal=True)
                  .str.replace_all('"', '\\"', literal=True), literal=False)
    out = '"' + body + '"'
    if not plain.all():
        idx = (~plain).arg_true()
        out = out.scatter(idx, pl.Series([_encode(t) for t in col.gather(idx).to_list()], dtype=pl.String))
    return out


def json_string(text: str) -> str:
    """``json.dumps(text)`` for one string."""
    return _encode(text)
