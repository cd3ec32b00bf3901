"""Readers for the MiniOneRec ``data/Amazon`` files: split CSVs, the info catalog, index.json, item.json.

Every reader validates strictly and raises `sidcore.errors.DataError` with a one-line message that
names the file, the line (CSV/info) or key (JSON) and what was expected. List-valued CSV columns
are Python literals and are parsed with `ast.literal_eval` (never `eval`). Rows come back as frozen
attrs objects with tuples, so nothing downstream can mutate shared data. Formats: reference-spec §1,
docs/data.md.
"""

from __future__ import annotations

import ast
import csv
import json
import lzma
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import attrs

from sidcore.errors import DataError, file_error

CSV_COLUMNS = (
    "user_id",
    "history_item_title",
    "item_title",
    "history_item_id",
    "item_id",
    "history_item_sid",
    "item_sid",
)
ITEM_KEYS = ("title", "description", "brand", "categories")
SID_TOKEN_RE = re.compile(r"<[A-Za-z]+_\d+>")
_SID_RE = re.compile(r"^(?:<[A-Za-z]+_\d+>)+$")


@attrs.frozen(kw_only=True)
class InteractionRow:
    """One CSV row: a user's chronological history (oldest first) and the next item.

    Attributes:
        line: 1-based line number of the row's first physical line in its file (for messages).
    """

    user_id: str
    history_item_title: tuple[str, ...]
    item_title: str
    history_item_id: tuple[int, ...]
    item_id: int
    history_item_sid: tuple[str, ...]
    item_sid: str
    line: int = 0


@attrs.frozen(kw_only=True)
class InfoEntry:
    """One info-file line: ``<sid>\\t<title>\\t<item_id>``."""

    sid: str
    title: str
    item_id: str


@attrs.frozen(kw_only=True)
class ItemMeta:
    """One item.json value (all four keys are required)."""

    title: str
    description: str
    brand: str
    categories: str


def split_sid(sid: str) -> tuple[str, ...]:
    """``"<a_1><b_2><c_3>"`` -> ``("<a_1>", "<b_2>", "<c_3>")``; ValueError if not a SID string."""
    if not _SID_RE.match(sid):
        raise ValueError(f"not a SID string: {sid!r}")
    return tuple(SID_TOKEN_RE.findall(sid))


def is_sid(text: str) -> bool:
    """True for a concatenation of level tokens like ``<a_1><b_2><c_3>``."""
    return bool(_SID_RE.match(text))


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise file_error(path, "file not found")


def _literal_list(path: Path, line: int, key: str, text: str, item_type: type) -> tuple[Any, ...]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise file_error(
            path, f"expected a Python list literal, got {text[:60]!r}", line=line, key=key
        ) from None
    if not isinstance(value, list) or not all(type(v) is item_type for v in value):
        raise file_error(
            path, f"expected a list of {item_type.__name__}, got {text[:60]!r}", line=line, key=key
        )
    return tuple(value)


def _parse_row(
    path: Path, line: int, rec: dict[str, str], valid_sids: Collection[str] | None
) -> InteractionRow:
    titles = _literal_list(path, line, "history_item_title", rec["history_item_title"], str)
    ids = _literal_list(path, line, "history_item_id", rec["history_item_id"], int)
    sids = _literal_list(path, line, "history_item_sid", rec["history_item_sid"], str)
    if not len(titles) == len(ids) == len(sids):
        raise file_error(
            path,
            f"history lists differ in length (titles {len(titles)}, ids {len(ids)}, sids {len(sids)})",
            line=line,
        )
    try:
        item_id = int(rec["item_id"])
    except ValueError:
        raise file_error(
            path, f"expected an integer, got {rec['item_id']!r}", line=line, key="item_id"
        ) from None
    item_sid = rec["item_sid"]
    for key, sid in [("item_sid", item_sid)] + [("history_item_sid", s) for s in sids]:
        if not is_sid(sid):
            raise file_error(path, f"expected a SID like <a_1><b_2><c_3>, got {sid!r}", line=line, key=key)
        if valid_sids is not None and sid not in valid_sids:
            raise file_error(path, f"SID {sid} is not in the catalog (info file)", line=line, key=key)
    return InteractionRow(
        user_id=rec["user_id"],
        history_item_title=titles,
        item_title=rec["item_title"],
        history_item_id=ids,
        item_id=item_id,
        history_item_sid=sids,
        item_sid=item_sid,
        line=line,
    )


def read_csv(
    path: str | Path,
    *,
    valid_sids: Collection[str] | None = None,
    skip_empty_history: bool = False,
) -> list[InteractionRow]:
    """Read a train/valid/test CSV.

    Args:
        path: the CSV (header must be exactly `CSV_COLUMNS`, in order).
        valid_sids: when given, every target and history SID must be in it (the info file's SIDs).
        skip_empty_history: drop rows whose history is empty (the JAX port's behaviour; upstream keeps them).

    Returns:
        Rows in file order.

    Raises:
        DataError: missing file, wrong header, malformed row (field count, literals, ids, SIDs).
    """
    path = Path(path)
    _require_file(path)
    rows: list[InteractionRow] = []
    opener = lzma.open if path.suffix == ".xz" else open  # the bundled full splits are xz-compressed
    with opener(path, "rt", newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None or tuple(header) != CSV_COLUMNS:
                raise file_error(
                    path, f"expected header {','.join(CSV_COLUMNS)}, got {','.join(header or [])!r}", line=1
                )
            start = reader.line_num + 1
            for fields in reader:
                if not fields:  # blank line
                    start = reader.line_num + 1
                    continue
                if len(fields) != len(CSV_COLUMNS):
                    raise file_error(
                        path, f"expected {len(CSV_COLUMNS)} fields, got {len(fields)}", line=start
                    )
                row = _parse_row(path, start, dict(zip(CSV_COLUMNS, fields)), valid_sids)
                if not (skip_empty_history and not row.history_item_sid):
                    rows.append(row)
                start = reader.line_num + 1
        except csv.Error as exc:
            raise file_error(path, f"malformed CSV: {exc}", line=reader.line_num) from None
        except UnicodeDecodeError:
            raise file_error(path, "not UTF-8 text") from None
        except (lzma.LZMAError, EOFError) as exc:
            raise file_error(path, f"corrupt xz file: {exc}") from None
    return rows


def read_info(path: str | Path) -> list[InfoEntry]:
    """Read the info catalog: one ``<sid>\\t<title>\\t<item_id>`` per line (exactly 3 TAB fields).

    The SID column is stripped (as the upstream evaluator does); a line with a SID that is not a
    concatenation of level tokens is an error.
    """
    path = Path(path)
    _require_file(path)
    out: list[InfoEntry] = []
    first_line: dict[str, int] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise file_error(path, "not UTF-8 text") from None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        fields = raw.split("\t")
        if len(fields) != 3:
            raise file_error(
                path,
                f"expected 3 TAB-separated fields <sid>\\t<title>\\t<item_id>, got {len(fields)}",
                line=lineno,
            )
        sid = fields[0].strip()
        if not is_sid(sid):
            raise file_error(path, f"expected a SID like <a_1><b_2><c_3>, got {sid!r}", line=lineno)
        item_id = fields[2].strip()
        if item_id in first_line:
            raise file_error(path, f"item id {item_id} is listed twice (first on line {first_line[item_id]})",
                             line=lineno)
        first_line[item_id] = lineno
        out.append(InfoEntry(sid=sid, title=fields[1], item_id=item_id))
    if not out:
        raise file_error(path, "empty catalog (no items)")
    return out


class _DuplicateKey(ValueError):
    """A JSON object repeats a key (args[0])."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file whose top level is an object; duplicate keys, bad JSON or text are one-line `DataError` s."""
    _require_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_object)
    except _DuplicateKey as exc:
        raise file_error(path, "duplicate key (JSON would keep only the last value silently)",
                         key=str(exc.args[0])) from None
    except json.JSONDecodeError as exc:
        raise file_error(path, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    except UnicodeDecodeError:
        raise file_error(path, "not UTF-8 text") from None
    if not isinstance(data, dict):
        raise file_error(path, f"expected a JSON object at top level, got {type(data).__name__}")
    return data


def read_index(path: str | Path) -> dict[str, tuple[str, ...]]:
    """Read index.json: item id (string key) -> SID level tokens, in file key order.

    Raises:
        DataError: when an entry is not a non-empty list of SID tokens like ``"<a_12>"``.
    """
    path = Path(path)
    data = read_json_object(path)
    out: dict[str, tuple[str, ...]] = {}
    for key, value in data.items():
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(t, str) and SID_TOKEN_RE.fullmatch(t) for t in value)
        ):
            raise file_error(
                path, f'expected a list of SID tokens like ["<a_1>", "<b_2>"], got {value!r:.60}', key=key
            )
        out[key] = tuple(value)
    if not out:
        raise file_error(path, "empty index (no items)")
    return out


def read_items(path: str | Path) -> dict[str, ItemMeta]:
    """Read item.json: item id -> `ItemMeta` (keys title, description, brand, categories; strings)."""
    path = Path(path)
    data = read_json_object(path)
    out: dict[str, ItemMeta] = {}
    for key, value in data.items():
        if not isinstance(value, dict) or not all(isinstance(value.get(k), str) for k in ITEM_KEYS):
            raise file_error(path, f"expected an object with string keys {', '.join(ITEM_KEYS)}", key=key)
        out[key] = ItemMeta(**{k: value[k] for k in ITEM_KEYS})
    return out


def catalog_sids(info: list[InfoEntry]) -> frozenset[str]:
    """The set of valid SID strings of an info catalog."""
    return frozenset(e.sid for e in info)


def check_info_matches_index(
    info_path: str | Path, info: list[InfoEntry], index: Mapping[str, tuple[str, ...]]
) -> None:
    """Every info line's SID must equal the concatenated index.json tokens of its item id, and every
    index.json item must be in the catalog (else it could never be recommended)."""
    listed = {e.item_id for e in info}
    absent = [k for k in index if k not in listed]
    if absent:
        raise file_error(info_path, f"{len(absent)} item(s) of index.json are missing from the catalog "
                         f"(e.g. item id {absent[0]})")
    for entry in info:
        tokens = index.get(entry.item_id)
        if tokens is None:
            raise file_error(info_path, f"item id {entry.item_id} is not in index.json", key=entry.item_id)
        if "".join(tokens) != entry.sid:
            raise file_error(
                info_path, f"SID {entry.sid} differs from index.json's {''.join(tokens)}", key=entry.item_id
            )


def bundled_data_dir() -> Path:
    """The bundled MiniOneRec-layout sample (``sidcore/assets/minionerec``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "minionerec"


def bundled_full_dir() -> Path:
    """The full Industrial valid/test splits shipped xz-compressed (``data.data_dir=bundled-full``;
    catalog, index and items come from `bundled_data_dir`)."""
    return Path(__file__).resolve().parent.parent / "assets" / "minionerec_full"


def _csv(path: Path) -> Path:
    """``path``, or ``path.xz`` when only the compressed file exists."""
    xz = path.with_name(path.name + ".xz")
    return xz if not path.exists() and xz.exists() else path


def split_paths(data_dir: str | Path, category: str) -> dict[str, Path]:
    """The MiniOneRec file layout of one category under ``data_dir`` (files may not exist; a split
    CSV may be xz-compressed as ``<name>.csv.xz``)."""
    root = Path(data_dir)
    stem = f"{category}_5_2016-10-2018-11"
    return {
        "train": _csv(root / "train" / f"{stem}.csv"),
        "valid": _csv(root / "valid" / f"{stem}.csv"),
        "test": _csv(root / "test" / f"{stem}.csv"),
        "info": root / "info" / f"{stem}.txt",
        "index": root / "index" / f"{category}.index.json",
        "items": root / "index" / f"{category}.item.json",
    }


def data_dir_paths(data_dir: str | Path, category: str) -> dict[str, Path]:
    """`split_paths` of ``data.data_dir``: ``"bundled"`` is the sample, ``"bundled-full"`` the full
    shipped splits with the sample's catalog, index and items (those are complete there)."""
    if data_dir not in ("bundled", "bundled-full"):
        return split_paths(data_dir, category)
    p = split_paths(bundled_data_dir(), category)
    if data_dir == "bundled-full":
        full = split_paths(bundled_full_dir(), category)
        p.update({k: full[k] for k in ("train", "valid", "test")})
    return p


__all__ = [
    "CSV_COLUMNS",
    "DataError",
    "InfoEntry",
    "InteractionRow",
    "ItemMeta",
    "bundled_data_dir",
    "bundled_full_dir",
    "catalog_sids",
    "check_info_matches_index",
    "data_dir_paths",
    "is_sid",
    "read_csv",
    "read_index",
    "read_info",
    "read_items",
    "split_paths",
    "split_sid",
]
