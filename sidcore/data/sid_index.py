"""index.json as data: SID token naming, writing, collision statistics and the dedup level.

`sidcore.data.minionerec.read_index` reads the file; this module adds what building one needs and
stays numpy-only (no jax), so ``sid index stats`` is instant.

* **Tokens.** Level ``l`` (0-based) of code ``c`` is ``<{letter}_{c}>`` with letters ``a, b, c, d, ...``
  (upstream: ``<a_..><b_..><c_..>`` and ``<d_..>`` for the dedup level). `codes_to_index` keeps
  codes as given (0-based, like the shipped RQ-VAE index); ``offset=1`` reproduces upstream's
  constrained RQ-Kmeans (codes 1..K).
* **File format.** `format_index` is ``json.dumps`` with the default separators and no trailing
  newline, keys in item order: the shipped ``Industrial_and_Scientific.index.json`` read and written
  back is byte-identical (a test checks it). `write_index` writes atomically (temp file + rename).
* **Collisions.** Items sharing one SID form a *group*; collision rate = (items - unique SIDs) /
  items (Industrial: 16 / 3686 = 0.434 %).
* **Dedup** (`dedup_index`): ``variable`` appends ``<d_r>`` only to items of a colliding group, r
  the 1-based ordinal in item order (upstream ``rqkmeans_constrained.py``: depths 3 and 4 mixed);
  ``fixed`` appends it to every item, ``<d_0>`` to unique ones (GRID-style fixed depth).
"""

from __future__ import annotations

import json
import os
import string
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from sidcore.errors import DataError

Index = Mapping[str, Sequence[str]]
LETTERS = string.ascii_lowercase
DEDUP_MODES = ("none", "variable", "fixed")

__all__ = [
    "DEDUP_MODES",
    "IndexStats",
    "codes_to_index",
    "dedup_index",
    "format_index",
    "format_stats",
    "index_stats",
    "level_token",
    "write_index",
]


def level_token(level: int, code: int) -> str:
    """``level_token(0, 12) == "<a_12>"``; levels beyond 26 are not supported."""
    if not 0 <= level < len(LETTERS):
        raise ValueError(f"SID level {level} out of range 0..{len(LETTERS) - 1}")
    return f"<{LETTERS[level]}_{int(code)}>"


def codes_to_index(
    codes: np.ndarray, *, item_ids: Sequence[str] | None = None, offset: int = 0
) -> dict[str, tuple[str, ...]]:
    """``codes [N, L]`` (int, -1 = no token at that level, only at the end of a row) -> index.

    Args:
        item_ids: keys in row order; default ``"0" .. "N-1"`` (item-id order of the embeddings).
        offset: added to every code (1 = upstream constrained RQ-Kmeans numbering).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be [N, L], got shape {codes.shape}")
    keys = [str(i) for i in range(codes.shape[0])] if item_ids is None else list(item_ids)
    if len(keys) != codes.shape[0]:
        raise ValueError(f"{len(keys)} item ids for {codes.shape[0]} code rows")
    out: dict[str, tuple[str, ...]] = {}
    for key, row in zip(keys, codes.tolist()):
        toks = []
        for level, c in enumerate(row):
            if c < 0:
                break
            toks.append(level_token(level, c + offset))
        out[key] = tuple(toks)
    return out


def format_index(index: Index) -> str:
    """The index.json text (upstream's ``json.dumps`` layout, no trailing newline)."""
    return json.dumps({str(k): list(v) for k, v in index.items()})


def write_index(path: str | os.PathLike[str], index: Index) -> Path:
    """Write index.json atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(format_index(index))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _groups(index: Index) -> dict[str, list[str]]:
    by_sid: dict[str, list[str]] = {}
    for key, toks in index.items():
        by_sid.setdefault("".join(toks), []).append(key)
    return by_sid


def dedup_index(index: Index, mode: str) -> dict[str, tuple[str, ...]]:
    """Append a dedup level so that every SID is unique (see the module docstring).

    The dedup token is one level below the others (a 3-level index gets ``<d_..>``). Within a
    group, items are numbered in index key order.

    Raises:
        ValueError: unknown mode.
        DataError: the index mixes depths (dedup runs once, on the quantizer's codes).
    """
    if mode not in DEDUP_MODES:
        raise ValueError(f"dedup mode must be one of {', '.join(DEDUP_MODES)}, got {mode!r}")
    out = {k: tuple(v) for k, v in index.items()}
    if mode == "none":
        return out
    depths = {len(v) for v in index.values()}
    if len(depths) != 1:
        raise DataError(f"dedup '{mode}' needs an index of uniform depth, got depths {sorted(depths)}")
    level = depths.pop()
    for members in _groups(index).values():
        if len(members) == 1:
            if mode == "fixed":
                out[members[0]] += (level_token(level, 0),)
            continue
        for ordinal, key in enumerate(members, start=1):
            out[key] += (level_token(level, ordinal),)
    return out


@attrs.frozen(kw_only=True)
class IndexStats:
    """Collision and code-usage statistics of one index.json.

    Attributes:
        items: number of items (keys).
        unique_sids: distinct SID strings.
        collision_rate: ``(items - unique_sids) / items``.
        groups: SIDs shared by two or more items.
        max_group_size: items of the largest group (1 when collision-free).
        depths: item count per SID depth, e.g. ``{3: 3650, 4: 36}``.
        codes_used: distinct tokens per level (items shorter than the level are skipped).
        largest_code: items holding the most frequent token, per level.
        max_branching: per prefix length 1..L-1, the most distinct next tokens after one prefix.
    """

    items: int
    unique_sids: int
    collision_rate: float
    groups: int
    max_group_size: int
    depths: dict[int, int]
    codes_used: tuple[int, ...]
    largest_code: tuple[int, ...]
    max_branching: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["depths"] = {str(k): v for k, v in sorted(self.depths.items())}
        return d


def index_stats(index: Index) -> IndexStats:
    """Compute `IndexStats` (pure Python; 3.7k items take milliseconds)."""
    if not index:
        raise DataError("empty index (no items)")
    sizes = [len(m) for m in _groups(index).values()]
    n = len(index)
    depth = max(len(v) for v in index.values())
    codes_used, largest, branching = [], [], []
    for level in range(depth):
        counts = Counter(v[level] for v in index.values() if len(v) > level)
        codes_used.append(len(counts))
        largest.append(max(counts.values()))
        if level:
            children: dict[tuple[str, ...], set[str]] = {}
            for v in index.values():
                if len(v) > level:
                    children.setdefault(tuple(v[:level]), set()).add(v[level])
            branching.append(max(len(c) for c in children.values()))
    return IndexStats(
        items=n,
        unique_sids=len(sizes),
        collision_rate=(n - len(sizes)) / n,
        groups=sum(1 for s in sizes if s > 1),
        max_group_size=max(sizes),
        depths=dict(sorted(Counter(len(v) for v in index.values()).items())),
        codes_used=tuple(codes_used),
        largest_code=tuple(largest),
        max_branching=tuple(branching),
    )


def format_stats(stats: IndexStats, *, source: str = "") -> str:
    """Human-readable report (one fact per line)."""
    depths = ", ".join(f"{d} levels: {c}" for d, c in sorted(stats.depths.items()))
    lines = [
        *([f"index           {source}"] if source else []),
        f"items           {stats.items}",
        f"unique SIDs     {stats.unique_sids}",
        f"collision rate  {100 * stats.collision_rate:.3f} %",
        f"groups          {stats.groups} (max size {stats.max_group_size})",
        f"depths          {depths}",
        "codes used      " + " / ".join(str(c) for c in stats.codes_used) + "  (per level)",
        "largest code    " + " / ".join(str(c) for c in stats.largest_code) + "  (items, per level)",
        "max branching   " + (" / ".join(str(b) for b in stats.max_branching) or "-")
        + "  (after prefix length 1, 2, ...)",
    ]
    return "\n".join(lines)
