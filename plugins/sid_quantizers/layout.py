"""Write a MiniOneRec ``data/Amazon`` folder under a new index (upstream ``convert_dataset.py``).

Given the source folder, a category and the new item id -> SID tokens mapping, `write_layout`
writes into ``out``:

* ``index/<C>.index.json`` (`sidcore.data.sid_index.write_index`) and a copy of ``<C>.item.json``;
* the info file: every source line with its SID replaced (title and item id kept, same order); with
  no source info file, one line per item of item.json (``sid \\t title \\t item_id``, id order);
* every split CSV found (``train``, ``valid``, ``test``): ``item_sid`` and ``history_item_sid``
  recomputed from ``item_id`` / ``history_item_id`` (all levels joined, any depth); every other
  field is copied byte for byte.

With the source's own index, every output file is byte-identical to its source (a test checks
it), so the only differences a new index makes are the SIDs.
"""

from __future__ import annotations

import ast
import csv
import io
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from sidcore.api import CSV_COLUMNS, read_items, split_paths
from sidcore.api import write_index
from sidcore.api import file_error

__all__ = ["write_layout"]

SPLITS = ("train", "valid", "test")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sid(sids: Mapping[str, str], item_id: str, path: Path, line: int, key: str) -> str:
    sid = sids.get(item_id)
    if sid is None:
        raise file_error(path, f"item id {item_id} is not in the new index", line=line, key=key)
    return sid


def _rewrite_csv(src: Path, sids: Mapping[str, str]) -> str:
    text = src.read_text(encoding="utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = next(reader, None)
    if header is None or tuple(header) != CSV_COLUMNS:
        raise file_error(src, f"expected header {','.join(CSV_COLUMNS)}", line=1)
    writer.writerow(header)
    col = {name: i for i, name in enumerate(CSV_COLUMNS)}
    for fields in reader:
        line = reader.line_num
        if not fields:
            continue
        if len(fields) != len(CSV_COLUMNS):
            raise file_error(src, f"expected {len(CSV_COLUMNS)} fields, got {len(fields)}", line=line)
        try:
            hist = ast.literal_eval(fields[col["history_item_id"]])
        except (ValueError, SyntaxError):
            raise file_error(src, "expected a Python list literal", line=line, key="history_item_id") from None
        if not isinstance(hist, list):
            raise file_error(src, "expected a list of item ids", line=line, key="history_item_id")
        fields[col["history_item_sid"]] = str(
            [_sid(sids, str(h), src, line, "history_item_id") for h in hist])
        fields[col["item_sid"]] = _sid(sids, fields[col["item_id"]].strip(), src, line, "item_id")
        writer.writerow(fields)
    return out.getvalue()


def _rewrite_info(src: Path, sids: Mapping[str, str]) -> str:
    lines = []
    for lineno, raw in enumerate(src.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        fields = raw.split("\t")
        if len(fields) != 3:
            raise file_error(src, f"expected 3 TAB-separated fields, got {len(fields)}", line=lineno)
        lines.append("\t".join([_sid(sids, fields[2].strip(), src, lineno, "item_id"), fields[1], fields[2]]))
    return "".join(line + "\n" for line in lines)


def write_layout(data_dir: str | Path, category: str, index: Mapping[str, Sequence[str]],
                 out: str | Path) -> dict[str, Path]:
    """Write the new layout (see the module docstring); returns the written paths by role.

    Raises:
        DataError: a source file is malformed or names an item the new index lacks.
    """
    src = split_paths(data_dir, category)
    dst = split_paths(out, category)
    if Path(out).resolve() == Path(data_dir).resolve():
        raise file_error(out, "--out must differ from --data-dir (the source files are read while writing)")
    sids = {k: "".join(v) for k, v in index.items()}
    written = {"index": write_index(dst["index"], index)}
    if src["items"].is_file():
        dst["items"].parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src["items"], dst["items"])
        written["items"] = dst["items"]
    if src["info"].is_file():
        _atomic_write(dst["info"], _rewrite_info(src["info"], sids))
    else:
        items = read_items(src["items"])
        _atomic_write(dst["info"], "".join(
            f"{_sid(sids, k, src['items'], 0, k)}\t{m.title}\t{k}\n" for k, m in items.items()))
    written["info"] = dst["info"]
    for split in SPLITS:
        if src[split].is_file():
            _atomic_write(dst[split], _rewrite_csv(src[split], sids))
            written[split] = dst[split]
    return written
