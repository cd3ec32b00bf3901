"""MiniOneRec CSV splits -> the fixed-window item-id arrays of upstream ``sasrec.py``.

Item ids are the CSVs' ``history_item_id`` / ``item_id`` (the info file's line order: line i holds
item i, and ``item_num`` = its line count). A history is right-padded with ``item_num`` to
``seq_len`` (10, upstream's ``seq_size``); longer histories keep their last ``seq_len`` items
(upstream would fail on them; the released splits hold at most 10) and empty ones are dropped (no
state to score; upstream would index position -1).

Training sets (`load_splits`):

- ``train_split="train"``: upstream's own setting (the train CSV, selection on valid).
- ``train_split="valid"`` with ``test_histories``: what sid's main job trains on when the train
  split is not released (docs/data.md): the valid rows plus the next-item prefixes of each test
  user's items before their first test target (`sidcore.data.prefixes`, leak-free).
- Popularity (`load_splits`' ``"popularity"``): items by their interactions (history items and
  targets) in the rows sid's own popularity baseline counts (`sidcore.data.prefixes.popularity_rows`),
  ties in first-seen order; the run reports it beside the model, at item level.
- ``select="holdout"``: a leak-free selection set for that setting: each test user's last
  pre-test transition (history ``h[:-1] -> h[-1]`` of their first test row), taken out of training
  (every training row of that user with that target is removed).
"""

from __future__ import annotations

import collections

import attrs
import numpy as np

from sidcore.data.minionerec import InteractionRow, data_dir_paths, read_csv, read_info
from sidcore.data.prefixes import expand_training_rows, first_rows, popularity_rows
from sidcore.errors import ConfigError, file_error

__all__ = ["Sequences", "load_splits", "to_arrays"]


@attrs.frozen(kw_only=True, eq=False)
class Sequences:
    """``seq [N, L]`` int32 right-padded with ``item_num``, ``lengths [N]``, ``targets [N]``."""

    seq: np.ndarray
    lengths: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return int(self.targets.shape[0])


def to_arrays(rows: list[InteractionRow], *, item_num: int, seq_len: int, path: object) -> Sequences:
    """Arrays of ``rows`` (read from ``path``, named in errors); ids must be ``< item_num``."""
    seq, lengths, targets = [], [], []
    for r in rows:
        for key, ids in (("item_id", (r.item_id,)), ("history_item_id", r.history_item_id)):
            bad = next((i for i in ids if not 0 <= i < item_num), None)
            if bad is not None:
                raise file_error(path, f"item id {bad} is outside the catalog (0..{item_num - 1}, the info "
                                 "file's lines)", line=r.line or None, key=key)
        hist = list(r.history_item_id[-seq_len:])
        if not hist:
            continue
        seq.append(hist + [item_num] * (seq_len - len(hist)))
        lengths.append(len(hist))
        targets.append(r.item_id)
    return Sequences(seq=np.asarray(seq, np.int32).reshape(-1, seq_len), lengths=np.asarray(lengths, np.int32),
                     targets=np.asarray(targets, np.int32))


def _holdout(test_rows: list[InteractionRow]) -> list[InteractionRow]:
    out = []
    for r in first_rows(test_rows):
        h = r.history_item_id
        if len(h) >= 2:
            out.append(attrs.evolve(r, history_item_id=h[:-1], item_id=h[-1], history_item_sid=r.history_item_sid[:-1],
                                    item_sid=r.history_item_sid[-1], history_item_title=r.history_item_title[:-1],
                                    item_title=r.history_item_title[-1]))
    return out


def load_splits(data_dir: str, category: str, *, train_split: str, test_histories: bool, select: str,
                seq_len: int) -> dict[str, object]:
    """``{"train", "select" (or None), "test": Sequences, "item_sids": [SID of item i], "item_num",
    "description": str}``.

    Raises:
        ConfigError: an impossible combination (selecting on the training split).
        DataError: a missing or malformed file, an item id outside the catalog.
    """
    if train_split not in ("train", "valid"):
        raise ConfigError(f"--train-split must be train or valid, got {train_split!r}")
    if select not in ("valid", "holdout", "none"):
        raise ConfigError(f"--select must be valid, holdout or none, got {select!r}")
    if select == train_split:
        raise ConfigError(f"--select {select}: the model would be selected on its own training split; use "
                          "--select holdout (leak-free) or none")
    paths = data_dir_paths(data_dir, category)
    info = read_info(paths["info"])
    item_num = len(info)
    if [e.item_id for e in info] != [str(i) for i in range(item_num)]:
        raise file_error(paths["info"], "item ids must be 0..N-1 in line order (upstream's item numbering)")
    if train_split == "train" and not paths["train"].exists():
        raise file_error(paths["train"], "file not found (the released MiniOneRec data has no train split: "
                         "use --train-split valid --test-histories --select holdout)")
    train_rows = read_csv(paths[train_split])
    test_rows = read_csv(paths["test"])
    rows = expand_training_rows(train_rows, test_rows if test_histories else None, prefixes=False)
    held = None
    if select == "holdout":
        held = _holdout(test_rows)
        drop = {(r.user_id, r.item_id) for r in held}
        rows = [r for r in rows if (r.user_id, r.item_id) not in drop]
    elif select == "valid":
        held = read_csv(paths["valid"])

    def arrays(rs: list[InteractionRow], key: str) -> Sequences:
        return to_arrays(rs, item_num=item_num, seq_len=seq_len, path=paths[key])

    train = arrays(rows, train_split)
    seen = popularity_rows(train_rows, test_rows if test_histories else None)
    popular = collections.Counter(i for r in seen for i in (*r.history_item_id, r.item_id))
    if len(train) == 0:
        raise file_error(paths[train_split], "no training rows with a non-empty history")
    desc = f"{category}: {train_split} split ({len(train_rows)} rows)"
    if test_histories:
        desc += " + the prefixes of each test user's items before their first test target"
    if select == "holdout":
        desc += f", less the {len(held or [])} held-out last pre-test transitions"
    desc += f" = {len(train)} examples"
    return {
        "train": train,
        "select": None if held is None else arrays(held, "valid" if select == "valid" else "test"),
        "test": arrays(test_rows, "test"),
        "item_sids": [e.sid for e in info],
        "item_num": item_num,
        "description": desc,
        "n_test_rows": len(test_rows),
        "popularity": [i for i, _ in popular.most_common()],  # item ids, most interactions first
    }
