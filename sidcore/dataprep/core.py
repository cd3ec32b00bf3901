"""The source-independent part of the data stage: time window, iterative k-core, numbering, sequences.

Every source (Amazon 2018, Amazon 2023, a generic interactions table) becomes an event table with the
columns ``user`` and ``item`` (strings) and ``ts`` (integer seconds), in input order. From there the
steps are upstream's (MiniOneRec ``data/amazon18_data_process.py``), computed with numpy/polars:

- **k-core**: events outside ``[start, end]`` (both bounds inclusive; no window when either bound is
  0, as upstream's ``if start and end``) and events of items without a kept title are dropped; then
  users with fewer than ``user_k`` and items with fewer than ``item_k`` events are removed until none
  is. Upstream removes them pass by pass over a Python list; the result of any removal order is the
  same (the unique maximal sub-multigraph where every degree reaches its threshold), so sid counts
  with ``np.bincount`` and stops at the same fixed point.
- **numbering**: users in order of their first kept event; each user's events sorted by time, ties
  in input order (Python's stable sort); items numbered walking users in that order.
- **sequences**: each event after a user's first is a target with up to ``max_history`` previous
  items; targets sorted by time, ties in (user number, position) order — the order upstream's stable
  sort of its per-user lists gives; split at ``int(0.8 n)`` and ``int(0.9 n)``.
"""

from __future__ import annotations

import calendar
import logging

from typing import Any

import attrs
import numpy as np
import polars as pl

log = logging.getLogger(__name__)


def month_start(year: int, month: int) -> int:
    """Unix time of ``year-month-01 00:00:00`` UTC (upstream uses local time; sid uses UTC)."""
    return calendar.timegm((year, month, 1, 0, 0, 0))


def codes(col: pl.Series) -> tuple[np.ndarray, int]:
    """Dense int codes (0..n-1) of a String column (any order), and how many distinct values.

    From the values' 64-bit hashes when they do not collide on this column (checked: as many distinct
    hashes as distinct values), else by a join on the values themselves."""
    hashes = col.hash(seed=0).to_numpy()
    uniq, inverse = np.unique(hashes, return_inverse=True)
    n = col.n_unique()
    if len(uniq) == n:
        return inverse.reshape(-1).astype(np.int32), n
    table = pl.DataFrame({"k": col.unique(), "v": np.arange(n, dtype=np.int32)})
    coded = pl.DataFrame({"k": col}).join(table, on="k", how="left", maintain_order="left")["v"]
    return coded.to_numpy(), n


def k_core(user: np.ndarray, item: np.ndarray, alive: np.ndarray, *, user_k: int, item_k: int,
           n_users: int, n_items: int) -> np.ndarray:
    """Indices (ascending) of the events in the maximal (user_k, item_k)-core among `alive` ones."""
    idx = np.flatnonzero(alive)
    passes = 0
    while True:
        passes += 1
        u, i = user[idx], item[idx]
        un = np.bincount(u, minlength=n_users)
        inn = np.bincount(i, minlength=n_items)
        keep = (un[u] >= user_k) & (inn[i] >= item_k)
        if keep.all():
            break
        idx = idx[keep]
    log.debug("k-core: %d passes, %d events left", passes, len(idx))
    return idx


def window_mask(ts: np.ndarray, start: int, end: int) -> np.ndarray:
    """Upstream's window test: kept when ``start <= ts <= end``; everything when a bound is 0."""
    if not (start and end):
        return np.ones(len(ts), dtype=bool)
    return (ts >= start) & (ts <= end)


@attrs.define
class Kept:
    """The k-core's outcome: kept event indices (input order) and how many items they hold."""

    rows: np.ndarray
    n_items: int
    start_year: int


def filter_events(user: np.ndarray, item: np.ndarray, ts: np.ndarray, titled: np.ndarray, *, user_k: int,
                  item_k: int, start: tuple[int, int] | None, end: tuple[int, int] | None,
                  min_items: int = 0, floor_year: int = 1996) -> Kept:
    """Window + k-core, with upstream's year back-off: while fewer than `min_items` items remain and
    the start year is above `floor_year`, move the start one year back and start over."""
    n_users = int(user.max()) + 1 if len(user) else 0
    n_items = int(item.max()) + 1 if len(item) else 0
    year = start[0] if start else 0
    while True:
        lo = month_start(year, start[1]) if start else 0
        hi = month_start(*end) if end else 0
        alive = window_mask(ts, lo, hi) & titled[item]
        rows = k_core(user, item, alive, user_k=user_k, item_k=item_k, n_users=n_users, n_items=n_items)
        kept_items = int(np.count_nonzero(np.bincount(item[rows], minlength=n_items))) if len(rows) else 0
        log.info("window from %s: %d events, %d items after the k-core", year or "-", len(rows), kept_items)
        if start and year > floor_year and kept_items < min_items:
            year -= 1
            continue
        return Kept(rows=rows, n_items=kept_items, start_year=year)


def _first_order(values: np.ndarray) -> np.ndarray:
    """For each value code, its rank by first occurrence in `values` (-1 where absent)."""
    uniq, first = np.unique(values, return_index=True)
    ranks = np.full(int(values.max()) + 1 if len(values) else 0, -1, dtype=np.int32)
    ranks[uniq[np.argsort(first, kind="stable")]] = np.arange(len(uniq))
    return ranks


@attrs.define
class Numbered:
    """Kept events numbered upstream's way.

    Attributes:
        rows: kept event indices in input order.
        uid, iid: user / item number of each kept event (same order as `rows`).
        by_user: permutation of `rows` positions: users in number order, each user's events by time.
        pos: position of each `by_user` event inside its user's sequence.
        target_order: `by_user` positions of the targets (pos >= 1) in upstream's global order.
    """

    rows: np.ndarray
    uid: np.ndarray
    iid: np.ndarray
    by_user: np.ndarray
    pos: np.ndarray
    target_order: np.ndarray
    n_users: int
    n_items: int


def number(rows: np.ndarray, user: np.ndarray, item: np.ndarray, ts: np.ndarray) -> Numbered:
    u, i, t = user[rows], item[rows], ts[rows]
    urank = _first_order(u)
    uid = urank[u]
    n = len(rows)
    by_user = np.lexsort((np.arange(n), t, uid))  # user number, then time, then input order
    irank = _first_order(i[by_user])
    iid = irank[i]
    su = uid[by_user]
    starts = np.r_[0, np.flatnonzero(np.diff(su)) + 1] if n else np.zeros(0, dtype=np.int64)
    lengths = np.diff(np.r_[starts, n])
    pos = np.arange(n) - np.repeat(starts, lengths)
    targets = np.flatnonzero(pos >= 1)
    target_order = targets[np.lexsort((pos[targets], su[targets], t[by_user][targets]))]
    return Numbered(rows=rows, uid=uid, iid=iid, by_user=by_user, pos=pos, target_order=target_order,
                    n_users=len(starts), n_items=int(irank.max()) + 1 if n else 0)


def split_bounds(n: int) -> tuple[int, int]:
    """Upstream's 8:1:1 cut points, with its float arithmetic."""
    return int(n * 0.8), int(n * 0.9)


def inter_lines(num: Numbered, targets: np.ndarray, *, max_history: int = 10, cut: int = 50) -> pl.Series:
    """The ``.inter`` lines (``uid\\thistory\\ttarget``, no newline) of `targets` (positions in
    `num.by_user` order, e.g. a slice of `num.target_order`), built from int arrays: the history of
    the target at position j is the items at j-k for k = window..1 where pos[j] >= k."""
    iid = num.iid[num.by_user]
    uid = num.uid[num.by_user][targets]
    pos = num.pos[targets]
    window = min(max_history, cut)
    frame = {"uid": uid, "iid": iid[targets]}
    for k in range(window, 0, -1):
        frame[f"h{k}"] = np.where(pos >= k, iid[np.maximum(targets - k, 0)], -1)
    df = pl.DataFrame(frame)
    hist = [pl.when(pl.col(f"h{k}") >= 0).then(pl.col(f"h{k}").cast(pl.String)) for k in range(window, 0, -1)]
    return df.select(
        pl.concat_str([pl.col("uid").cast(pl.String),
                       pl.concat_str(hist, separator=" ", ignore_nulls=True) if hist else pl.lit(""),
                       pl.col("iid").cast(pl.String)], separator="\t").alias("line")
    )["line"]


def keep_and_number(user: np.ndarray, item: np.ndarray, ts: np.ndarray, titled: np.ndarray, options: Any,
                    source: Any) -> tuple[Kept, Numbered, np.ndarray]:
    """The shared middle of every raw-data command: time window + iterative k-core (`filter_events`
    with ``options.user_k``/``item_k``/``start``/``end``/``min_items``; ``item_k`` None = ``user_k``,
    upstream's behaviour), upstream's numbering, and for each item number the kept-row position of
    its first event (to look its id up). Raises `DataError` naming `source` when nothing is left."""
    from sidcore.errors import DataError

    item_k = options.user_k if options.item_k is None else options.item_k
    kept = filter_events(user, item, ts, titled, user_k=options.user_k, item_k=item_k,
                         start=options.start, end=options.end, min_items=options.min_items)
    if len(kept.rows) == 0:
        raise DataError(f"{source}: no review is left after the time window and the {options.user_k}-core")
    num = number(kept.rows, user, item, ts)
    order = np.argsort(num.iid, kind="stable")
    return kept, num, order[np.r_[0, np.flatnonzero(np.diff(num.iid[order])) + 1]]
