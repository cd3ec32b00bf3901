"""Next-item prefix examples: the training rows upstream's (unreleased) train split would hold.

MiniOneRec's public data has valid/test splits only. A row holds a user's last <= 10 items and the
next one; the rows of one user follow each other in file order (row k+1's history ends with row
k's target). Upstream's train split is every next-item prefix of each user's sequence, so two data
options rebuild it from what is released (docs/data.md, "Prefix expansion"):

- ``data.train_prefixes``: every training row also yields ``history[:i] -> history[i]`` for each
  ``i >= 1`` (its own target row is kept).
- ``data.train_test_histories``: the items each test user had *before their first test target*
  (the history of that user's first test row) yield their prefixes too. Nothing at or after a
  user's first test target is ever used — no test target, no later test history — so the test
  metrics stay leak-free (tests/unit/test_prefixes.py proves it on the real split). Later test rows
  are not used: their histories hold the user's earlier test targets.

Examples are deduplicated by (user, history, target) and keep first-seen order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from sidcore.data.minionerec import InteractionRow


def prefix_rows(row: InteractionRow, *, keep_target: bool = True) -> list[InteractionRow]:
    """``row``'s next-item prefixes (history[:i] -> history[i], i >= 1), then ``row`` itself if
    ``keep_target``."""
    out = []
    for i in range(1, len(row.history_item_sid)):
        out.append(attrs.evolve(
            row,
            history_item_title=row.history_item_title[:i], item_title=row.history_item_title[i],
            history_item_id=row.history_item_id[:i], item_id=row.history_item_id[i],
            history_item_sid=row.history_item_sid[:i], item_sid=row.history_item_sid[i],
        ))
    if keep_target:
        out.append(row)
    return out


def first_rows(rows: Iterable[InteractionRow]) -> list[InteractionRow]:
    """Each user's first row in file order (the one whose history precedes all their targets)."""
    seen: set[str] = set()
    out = []
    for r in rows:
        if r.user_id not in seen:
            seen.add(r.user_id)
            out.append(r)
    return out


def dedupe(rows: Iterable[InteractionRow]) -> list[InteractionRow]:
    """Drop repeated (user, history, target) examples, keeping the first."""
    seen: set[tuple[str, tuple[str, ...], str]] = set()
    out = []
    for r in rows:
        key = (r.user_id, r.history_item_sid, r.item_sid)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def expand_training_rows(
    train: Sequence[InteractionRow],
    test: Sequence[InteractionRow] | None,
    *,
    prefixes: bool,
) -> list[InteractionRow]:
    """The training examples: ``train`` (with its prefixes if ``prefixes``), then, when ``test`` is
    given, the prefixes of each test user's history before their first test target."""
    out: list[InteractionRow] = []
    for r in train:
        out.extend(prefix_rows(r) if prefixes else [r])
    if test is not None:
        for r in first_rows(test):
            out.extend(prefix_rows(r, keep_target=False))
    return dedupe(out) if (prefixes or test is not None) else out


def popularity_rows(
    train: Sequence[InteractionRow], test: Sequence[InteractionRow] | None
) -> list[InteractionRow]:
    """The rows the popularity baseline counts (history items and targets): the training rows and,
    with test histories in use, each test user's first row *without its target* — the baseline sees
    exactly the interactions the model trained on."""
    out = list(train)
    if test is not None:
        out += [attrs.evolve(r, item_sid=r.history_item_sid[-1], history_item_sid=r.history_item_sid[:-1])
                for r in first_rows(test) if r.history_item_sid]
    return out


__all__ = ["dedupe", "expand_training_rows", "first_rows", "popularity_rows", "prefix_rows"]
