"""Checks across the MiniOneRec files that each parse on their own (issue 19, item 4).

A CSV row's item ids must have the row's SIDs in index.json (item-level metrics score by id), a
training split must not hold the test split's rows under another name (a copy, a symlink, the same
rows compressed), and the tasks that print titles need every item in item.json. Standard library
only: the config checks use `same_rows` without importing the data pipeline.
"""

from __future__ import annotations

import hashlib
import logging
import lzma
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sidcore.errors import file_error

log = logging.getLogger(__name__)

__all__ = ["check_items_cover", "check_row_ids", "rows_digest", "same_rows"]


def check_row_ids(path: str | Path, rows: Sequence[Any], index: Mapping[str, Sequence[str]]) -> None:
    """Every ``item_id`` / ``history_item_id`` of `rows` has the row's SID in index.json.

    Raises:
        DataError: one line naming the file, the row's line and both values.
    """
    for row in rows:
        pairs = [("item_id", row.item_id, row.item_sid)]
        pairs += [("history_item_id", i, sid) for i, sid in zip(row.history_item_id, row.history_item_sid)]
        for key, item_id, sid in pairs:
            tokens = index.get(str(item_id))
            if tokens is None:
                raise file_error(path, f"item id {item_id} is not in index.json", line=row.line, key=key)
            if "".join(tokens) != sid:
                raise file_error(path, f"item id {item_id} has SID {''.join(tokens)} in index.json, but the "
                                 f"row says {sid}", line=row.line, key=key)


def rows_digest(path: str | Path) -> str:
    """sha256 over a CSV's data lines (header skipped), sorted and with line endings normalised, of
    the decompressed text of a ``.xz`` file: equal for a copy, a reordering or a compressed copy."""
    p = Path(path)
    opener: Any = lzma.open if p.suffix == ".xz" else open
    with opener(p, "rb") as fh:
        lines = [ln.rstrip(b"\r\n") for ln in fh]
    h = hashlib.sha256()
    for line in sorted(ln for ln in lines[1:] if ln.strip()):
        h.update(line + b"\n")
    return h.hexdigest()


def same_rows(a: str | Path, b: str | Path) -> bool:
    """True when two existing CSVs are one file (path, symlink, hard link) or hold the same rows."""
    if os.path.realpath(a) == os.path.realpath(b) or os.path.samefile(a, b):
        return True
    try:
        return rows_digest(a) == rows_digest(b)
    except (OSError, EOFError, lzma.LZMAError):  # unreadable or corrupt: the CSV reader names it later
        return False


def check_items_cover(items_path: str | Path, index: Mapping[str, Sequence[str]], items: Mapping[str, Any],
                      *, needed: Sequence[str] = (), task: str = "") -> None:
    """Items of index.json missing from item.json: a warning with the count, or an error for the
    `needed` item ids (the training targets whose title `task` prints).

    Raises:
        DataError: a needed item is missing (names item.json, the count and one id).
    """
    need = [i for i in dict.fromkeys(needed) if i not in items]
    if need:
        raise file_error(items_path, f"{len(need)} training target item(s) have no entry, which {task} needs "
                         f"for their title (e.g. item id {need[0]})")
    missing = sum(1 for k in index if k not in items)
    if missing:
        log.warning("%s: %d of %d index.json item(s) have no entry; the alignment task skips them",
                    items_path, missing, len(index))
