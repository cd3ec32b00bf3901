"""Build the small MiniOneRec sample bundled under ``sidcore/assets/minionerec`` (reproducibly).

From a MiniOneRec ``data/Amazon`` folder it copies, for one category: the full info file and
index.json; the first ``valid_rows`` / ``test_rows`` records of the valid and test CSVs (a
byte-for-byte prefix of each file: rows are kept intact, multi-line records included); and an
item.json with **all** items but only their titles (``description``, ``brand`` and ``categories``
set to ``""``), which keeps every task buildable (alignment needs all titles) at a fraction of
the size. Run: ``python -m sidcore.data.make_sample SRC_DATA_DIR [--out DIR]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
from pathlib import Path

from sidcore.data.minionerec import CSV_COLUMNS, bundled_data_dir, read_items, split_paths
from sidcore.errors import DataError


def _first_rows(src: Path, n_rows: int) -> str:
    """Header + the first ``n_rows`` records, as the exact physical lines of the source file."""
    raw = src.read_bytes().decode("utf-8")
    lines = list(io.StringIO(raw, newline=""))  # physical lines exactly as the csv reader sees them
    reader = csv.reader(iter(lines))
    header = next(reader)
    if tuple(header) != CSV_COLUMNS:
        raise DataError(f"{src}: unexpected header {header}")
    end = reader.line_num
    for count, _ in enumerate(reader, start=1):
        end = reader.line_num
        if count == n_rows:
            break
    return "".join(lines[:end])


def make_sample(
    src_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    category: str = "Industrial_and_Scientific",
    valid_rows: int = 300,
    test_rows: int = 200,
) -> Path:
    """Write the sample and return its root (MiniOneRec ``data/Amazon`` layout).

    Args:
        src_dir: a MiniOneRec ``data/Amazon`` folder.
        out_dir: destination (default: the package's ``assets/minionerec``).
        category: which category to sample.
        valid_rows: valid CSV records to keep (the first ones, in file order).
        test_rows: test CSV records to keep.
    """
    src = split_paths(src_dir, category)
    out_root = Path(out_dir) if out_dir is not None else bundled_data_dir()
    dst = split_paths(out_root, category)
    for key in ("valid", "test", "info", "index", "items"):
        if not src[key].is_file():
            raise DataError(f"{src[key]}: file not found")
        dst[key].parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src["info"], dst["info"])
    shutil.copyfile(src["index"], dst["index"])
    dst["valid"].write_bytes(_first_rows(src["valid"], valid_rows).encode("utf-8"))
    dst["test"].write_bytes(_first_rows(src["test"], test_rows).encode("utf-8"))
    items = read_items(src["items"])
    titles = {
        k: {"title": v.title, "description": "", "brand": "", "categories": ""} for k, v in items.items()
    }
    dst["items"].write_text(json.dumps(titles, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    return out_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sidcore.data.make_sample", description=__doc__.split("\n")[0]
    )
    parser.add_argument("src_dir", help="MiniOneRec data/Amazon folder")
    parser.add_argument("--out", default=None, help="destination folder (default: sidcore/assets/minionerec)")
    parser.add_argument("--category", default="Industrial_and_Scientific")
    parser.add_argument("--valid-rows", type=int, default=300)
    parser.add_argument("--test-rows", type=int, default=200)
    args = parser.parse_args(argv)
    root = make_sample(
        args.src_dir, args.out, category=args.category, valid_rows=args.valid_rows, test_rows=args.test_rows
    )
    sys.stdout.write(f"wrote {root}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
