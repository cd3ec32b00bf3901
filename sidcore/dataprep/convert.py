"""``sid data convert``: an ``.inter`` folder + index.json -> the split CSVs and info file sid trains on.

The same files as MiniOneRec's ``convert_dataset.py`` (``OUT/{train,valid,test}/C_5_2016-10-2018-11.csv``
and ``OUT/info/C_5_2016-10-2018-11.txt``), plus ``OUT/index/C.index.json`` and ``OUT/index/C.item.json``
(byte copies of the inputs) so that ``data.data_dir=OUT data.category=C`` finds everything. Upstream's
rules, kept:

- info: one ``sid\\ttitle\\titem_id`` line per item.json entry (file order) that index.json has;
  a missing title reads ``Item_<id>``;
- rows: ``.inter`` lines after the header, stripped and split on TAB; lines without exactly three
  fields are skipped; a target without a SID drops the row; history items without a SID (or without
  an item.json entry) are left out of the SID (title) list only; ``user_id`` is ``A<user>``;
- ``--keep-longest-only``: the train split keeps each user's first row of maximal history length,
  users in first-seen order;
- ``--fix-info-titles`` (sid's, off by default): a TAB or line break inside a title would split its
  info line (upstream writes it raw; Amazon-2018 titles are only space-stripped); each becomes a space;
- ``--max-valid-samples`` / ``--max-test-samples``: ``random.sample`` after ``random.seed(seed)``,
  seeded again for each split; a split with no rows writes no CSV;
- CSV: pandas' ``to_csv(index=False)`` layout (Python's csv writer, minimal quoting, ``\\n``); lists
  as Python's ``str(list)``.
"""

from __future__ import annotations

import csv
import io
import logging
import random
import re
from pathlib import Path

import attrs

from sidcore.data.minionerec import read_json_object
from sidcore.dataprep.jsonl import require_file
from sidcore.dataprep.output import Outputs
from sidcore.errors import DataError, file_error

log = logging.getLogger(__name__)

COLUMNS = ("user_id", "history_item_title", "item_title", "history_item_id", "item_id",
           "history_item_sid", "item_sid")
SPLITS = ("train", "valid", "test")


@attrs.frozen(kw_only=True)
class ConvertOptions:
    category: str | None = None  # default: the dataset name
    keep_longest_only: bool = False
    max_valid_samples: int | None = None
    max_test_samples: int | None = None
    seed: int = 42
    fix_info_titles: bool = False  # upstream writes TAB / line breaks inside titles raw into the info file


def _sids(path: Path, index: dict) -> dict[str, str]:
    out = {}
    for key, tokens in index.items():
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise file_error(path, f"expected a list of SID token strings, got {tokens!r:.60}", key=key)
        out[key] = "".join(tokens)
    return out


def _titles(path: Path, items: dict) -> dict[str, str]:
    out = {}
    for key, value in items.items():
        if not isinstance(value, dict):
            raise file_error(path, f"expected an object, got {type(value).__name__}", key=key)
        title = value.get("title", f"Item_{key}")
        if isinstance(title, str) and not _utf8_ok(title):
            raise file_error(path, "title holds a lone surrogate (cannot be written as UTF-8, upstream fails too)",
                             key=key)
        out[key] = title
    return out


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_inter(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the data lines of an ``.inter`` file, upstream's way."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.readlines()[1:]
    return [(n, line.strip().split("\t")) for n, line in enumerate(lines, start=2) if line.strip()]


def _int(path: Path, lineno: int, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise file_error(path, f"expected an integer item id, got {text!r:.40}", line=lineno) from None


def split_rows(path: Path, split: str, sids: dict[str, str], titles: dict[str, str],
               keep_longest_only: bool) -> list[list[object]]:
    rows: list[list[object]] = []
    longest: dict[str, list[object]] = {}
    for lineno, fields in read_inter(path):
        if len(fields) != 3:
            continue
        user, seq, target = fields
        hist = [_int(path, lineno, x) for x in seq.split()] if seq.strip() else []
        tid = _int(path, lineno, target)
        tsid = sids.get(str(tid))
        if tsid is None:
            continue
        hkeys = [str(h) for h in hist]
        row = [f"A{user}", [titles[k] for k in hkeys if k in titles], titles.get(str(tid), f"Item_{tid}"),
               hist, tid, [sids[k] for k in hkeys if k in sids], tsid]
        if split == "train" and keep_longest_only:
            best = longest.get(user)
            if best is None or len(hist) > len(best[3]):
                longest[user] = row
        else:
            rows.append(row)
    return list(longest.values()) if split == "train" and keep_longest_only else rows


def csv_text(rows: list[list[object]]) -> str:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return buf.getvalue()


def convert(inter_dir: str | Path, *, dataset: str, index: str | Path, out: str | Path,
            options: ConvertOptions = ConvertOptions(), overwrite: bool = False) -> dict[str, int]:
    """Write the MiniOneRec layout of one category under `out`; returns row counts per split."""
    inter_dir, index, out = Path(inter_dir), Path(index), Path(out)
    category = options.category or dataset
    stem = f"{category}_5_2016-10-2018-11"
    item_path = inter_dir / f"{dataset}.item.json"
    targets = {s: out / s / f"{stem}.csv" for s in SPLITS}
    targets |= {"info": out / "info" / f"{stem}.txt", "index": out / "index" / f"{category}.index.json",
                "items": out / "index" / f"{category}.item.json"}
    if not any((inter_dir / f"{dataset}.{s}.inter").is_file() for s in SPLITS):
        raise DataError(f"{inter_dir}: no {dataset}.{{train,valid,test}}.inter file")
    outputs = Outputs(targets.values(), overwrite=overwrite)
    index_raw, item_raw = _read_bytes(index), _read_bytes(item_path)
    sids = _sids(index, read_json_object(index))
    items = read_json_object(item_path)
    titles = _titles(item_path, items)
    fix = _info_safe if options.fix_info_titles else (lambda t: t)
    info = "".join(f"{sids[k]}\t{fix(titles[k])}\t{k}\n" for k in items if k in sids)
    counts: dict[str, int] = {}
    with outputs:
        outputs.write(targets["info"], info)
        outputs.write(targets["index"], index_raw)
        outputs.write(targets["items"], item_raw)
        for split in SPLITS:
            path = inter_dir / f"{dataset}.{split}.inter"
            if not path.is_file():
                continue
            rows = split_rows(path, split, sids, titles, options.keep_longest_only)
            limit = {"valid": options.max_valid_samples, "test": options.max_test_samples}.get(split)
            if limit is not None and len(rows) > limit:
                rows = random.Random(options.seed).sample(rows, limit)
            counts[split] = len(rows)
            if rows:
                outputs.write(targets[split], csv_text(rows))
        outputs.remove_unwritten()
    log.info("converted %s: %s", inter_dir, counts)
    return counts


# TAB and every character str.splitlines() breaks on: inside an info title they split its line
_INFO_BREAKS = re.compile("[\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _info_safe(title: str) -> str:
    return _INFO_BREAKS.sub(" ", str(title))


def _read_bytes(path: Path) -> bytes:
    require_file(path)
    return path.read_bytes()
