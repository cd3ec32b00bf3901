"""A plain-Python transcription of the BEHAVIOUR of MiniOneRec's ``convert_dataset.py`` (``81b4ba9``).

Upstream loads ``NAME.item.json`` and ``NAME.index.json`` from the data folder (here the index path is
given), writes the info file (item.json order, items with an index entry, missing title ->
``Item_<id>``), then per split: header line skipped, blank lines skipped, ``strip().split('\\t')``,
lines without 3 fields skipped, rows whose target has no SID skipped, history SIDs/titles only for
items that have them, ``A<user>`` ids, keep-longest (strictly longer replaces) for train,
``random.seed(seed)`` + ``random.sample`` per split, and ``pandas.DataFrame(rows).to_csv(index=False)``.
pandas is not a dependency here: its ``to_csv`` hands each cell (``str()`` of lists and ints) to
Python's ``csv.writer`` (QUOTE_MINIMAL, ``"\\n"`` line ends), which is what this file calls.
"""

from __future__ import annotations

import csv
import json
import os
import random


def run(data_dir, dataset, index_path, out_dir, *, category=None, keep_longest_only=False,
        max_valid_samples=None, max_test_samples=None, seed=42):
    category = category or dataset
    with open(os.path.join(data_dir, f"{dataset}.item.json")) as fh:
        items = json.load(fh)
    with open(index_path) as fh:
        sem = json.load(fh)
    splits = {}
    for split in ("train", "valid", "test"):
        path = os.path.join(data_dir, f"{dataset}.{split}.inter")
        if os.path.exists(path):
            with open(path) as fh:
                lines = fh.readlines()[1:]
            splits[split] = [ln.strip().split("\t") for ln in lines if ln.strip()]
    for sub in ("train", "valid", "test", "info"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    stem = f"{category}_5_2016-10-2018-11"
    with open(os.path.join(out_dir, "info", f"{stem}.txt"), "w", encoding="utf-8") as fh:
        for item_id, data in items.items():
            if item_id in sem:
                fh.write(f"{''.join(sem[item_id])}\t{data.get('title', f'Item_{item_id}')}\t{item_id}\n")
    for split, lines in splits.items():
        rng = random.Random(seed)
        rows, longest = [], {}
        for line in lines:
            if len(line) != 3:
                continue
            user, seq, target = line
            hist = [int(x) for x in seq.split()] if seq.strip() else []
            tid = int(target)
            if str(tid) not in sem:
                continue
            row = {
                "user_id": f"A{user}",
                "history_item_title": [items[str(h)].get("title", f"Item_{h}") for h in hist if str(h) in items],
                "item_title": items.get(str(tid), {}).get("title", f"Item_{tid}"),
                "history_item_id": hist,
                "item_id": tid,
                "history_item_sid": ["".join(sem[str(h)]) for h in hist if str(h) in sem],
                "item_sid": "".join(sem[str(tid)]),
            }
            if split == "train" and keep_longest_only:
                if user not in longest or len(hist) > len(longest[user]["history_item_id"]):
                    longest[user] = row
            else:
                rows.append(row)
        if split == "train" and keep_longest_only:
            rows = list(longest.values())
        if split == "valid" and max_valid_samples is not None and len(rows) > max_valid_samples:
            rows = rng.sample(rows, max_valid_samples)
        elif split == "test" and max_test_samples is not None and len(rows) > max_test_samples:
            rows = rng.sample(rows, max_test_samples)
        if rows:
            with open(os.path.join(out_dir, split, f"{stem}.csv"), "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(list(rows[0]))
                for row in rows:
                    writer.writerow([row[k] for k in rows[0]])
