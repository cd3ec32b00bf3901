"""Build the `SidCatalog` (valid SIDs as token ids) from an info file, its index.json and a tokenizer.

The info file defines the valid items (the decoding trie and the "invalid prediction" test); SIDs
shared by several items (collisions: Industrial has 3686 lines but 3670 distinct SIDs) become one
catalog row whose items are listed in ``items_per_sid``. Every info line must agree with index.json,
and every level token must be a single token of the tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sidcore.data.minionerec import check_info_matches_index, read_index, read_info, split_sid
from sidcore.data.tokenizer import sid_token_ids, suffix_ids
from sidcore.interfaces import SidCatalog


def build_catalog(info_path: str | Path, index_path: str | Path, tokenizer: Any) -> SidCatalog:
    """Distinct SIDs of the info file (first-appearance order) as ``[N, D]`` token ids.

    SIDs may differ in depth (upstream's variable-depth dedup: 3 levels, 4 on colliding items):
    D is then the largest depth and shorter rows are right-padded with ``-1``.

    Args:
        info_path: the info catalog (``<sid>\\t<title>\\t<item_id>`` lines).
        index_path: index.json of the same category (consistency check).
        tokenizer: HF tokenizer holding the SID tokens.

    Raises:
        DataError: malformed files, info/index disagreement, or "tokenizer lacks SID tokens".
    """
    info = read_info(info_path)
    check_info_matches_index(info_path, info, read_index(index_path))
    items_per_sid: dict[str, list[str]] = {}
    for entry in info:
        items_per_sid.setdefault(entry.sid, []).append(entry.item_id)
    sids = tuple(items_per_sid)
    levels = [split_sid(s) for s in sids]
    depth = max(len(toks) for toks in levels)
    ids = sid_token_ids(tokenizer, (t for toks in levels for t in toks), source=str(info_path))
    token_ids = np.full((len(levels), depth), -1, dtype=np.int32)  # [N, D]; -1 pads shorter SIDs
    for row, toks in enumerate(levels):
        token_ids[row, : len(toks)] = [ids[t] for t in toks]
    return SidCatalog(
        sids=sids,
        token_ids=token_ids,
        suffix_ids=suffix_ids(tokenizer),
        items_per_sid={s: tuple(v) for s, v in items_per_sid.items()},
    )
