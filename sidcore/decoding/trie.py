"""The catalog as a prefix index (trie) in flat, device-friendly per-level CSR tables.

Every catalog item becomes one full generation path of ``T = D + len(suffix) + 1`` tokens: its
``D`` SID level tokens, the suffix ids (Qwen ``"\\n"`` = ``[198]``) and EOS. The trie over those
paths is stored level by level, built once on the host with numpy (no Python per node):

* nodes of level ``t`` are the distinct path prefixes of length ``t`` in sorted order (level 0 has
  the single root);
* edges of level ``t`` are the distinct prefixes of length ``t + 1``, grouped by parent node and
  sorted by token, so **edge ``e`` of level ``t`` is node ``e`` of level ``t + 1``** and the children
  of node ``n`` are the contiguous edges ``start[n] : start[n] + count[n]``;
* the edges of the last level are the leaves; ``leaf_rows[e]`` is the catalog row of leaf ``e``.

Mixed depth (e.g. 3 levels plus a 4th dedup token on colliding items only): ``token_ids`` rows
shorter than ``D`` are right-padded with ``-1``; such a row's path is its own levels, the suffix,
EOS, then ``-1`` up to ``T``. A ``-1`` edge is a "finished" transition that the beam search takes at
zero cost (`sidcore.decoding.beam.trie_policy`), so an item's score is still the sum of its own
``d + len(suffix) + 1`` log-probs, as with HF ``generate`` stopping at EOS.

A beam holding node ``n`` at step ``t`` reads its allowed next tokens with one gather of width
``M_t = max(count)`` (`TrieLevel.width`), padded with ``-1``. Memory is one int32 per edge plus two
per node, whatever the depth or branching (reference-spec §6.3 generalised to any depth).
"""

from __future__ import annotations

from typing import Sequence

import attrs
import numpy as np

from sidcore.errors import ConfigError, DataError
from sidcore.interfaces import SidCatalog

__all__ = ["PAD", "SidTrie", "TrieLevel"]

PAD = -1
"""Token of the zero-cost "finished" edges after EOS in a mixed-depth trie (and of padded outputs)."""


@attrs.frozen(kw_only=True, eq=False)
class TrieLevel:
    """Allowed transitions out of the nodes of one level.

    Attributes:
        tokens: ``[E]`` token id of each edge (edge ``e`` leads to node ``e`` of the next level).
        start: ``[n]`` index of each node's first edge.
        count: ``[n]`` number of children of each node (>= 1).
        width: ``max(count)``: the padded number of candidates per beam at this level.
    """

    tokens: np.ndarray  # [E] int32
    start: np.ndarray  # [n] int32
    count: np.ndarray  # [n] int32
    width: int

    @property
    def num_nodes(self) -> int:
        return int(self.start.shape[0])

    def children(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Host-side lookup: ``nodes [...]`` -> (tokens, child nodes), each ``[..., width]``, -1 padded.

        Negative node ids (dead beams) have no children.
        """
        nodes = np.asarray(nodes)
        safe = np.maximum(nodes, 0)
        j = np.arange(self.width)
        edge = self.start[safe][..., None] + j  # [..., M]
        valid = (j < self.count[safe][..., None]) & (nodes[..., None] >= 0)
        edge = np.where(valid, edge, 0)
        return np.where(valid, self.tokens[edge], -1), np.where(valid, edge, -1)


@attrs.frozen(kw_only=True, eq=False)
class SidTrie:
    """Per-level CSR tables of all catalog paths ``SID tokens -> suffix -> EOS``.

    Attributes:
        levels: ``T`` levels; level ``t`` constrains generated token ``t``.
        leaf_rows: ``[N]`` catalog row of each leaf (edges of the last level).
        depth: SID depth ``D`` (the largest, in a mixed-depth catalog).
        uniform_depth: every SID has ``D`` levels (no ``PAD`` edges).
        suffix_ids: tokens forced after the SID levels, before EOS.
        eos_id: end-of-sequence id (last token of every path).
    """

    levels: tuple[TrieLevel, ...]
    leaf_rows: np.ndarray  # [N] int64
    depth: int
    suffix_ids: tuple[int, ...]
    eos_id: int
    uniform_depth: bool = True

    @property
    def num_items(self) -> int:
        return int(self.leaf_rows.shape[0])

    @property
    def path_length(self) -> int:
        """``T = D + len(suffix) + 1`` generated tokens per item."""
        return len(self.levels)

    @property
    def max_token_id(self) -> int:
        return max(int(lv.tokens.max()) for lv in self.levels)

    @classmethod
    def from_catalog(cls, catalog: SidCatalog, *, eos_id: int) -> "SidTrie":
        """Build from `SidCatalog.token_ids` and `SidCatalog.suffix_ids`."""
        return cls.from_token_ids(catalog.token_ids, suffix_ids=catalog.suffix_ids, eos_id=eos_id)

    @classmethod
    def from_token_ids(cls, token_ids: np.ndarray, *, suffix_ids: Sequence[int], eos_id: int) -> "SidTrie":
        """Build from ``token_ids [N, D]`` (any depth ``D >= 1``, any branching).

        Raises:
            ConfigError: empty catalog, wrong rank, or negative ids.
            DataError: two catalog rows with the same token path.
        """
        ids = np.asarray(token_ids)
        if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
            raise ConfigError(f"catalog token_ids must be a non-empty [N, D] array, got shape {ids.shape}")
        n, depth = ids.shape
        tail = np.array([*suffix_ids, eos_id], dtype=np.int64)
        if (tail < 0).any():
            raise ConfigError("suffix ids and eos_id must be >= 0")
        real = ids >= 0  # [N, D]; -1 pads shorter SIDs of a mixed-depth catalog
        lengths = real.sum(axis=1)
        if (ids < PAD).any() or (lengths == 0).any() or (real[:, 1:] & ~real[:, :-1]).any():
            raise ConfigError("catalog token_ids rows must be >= 1 ids >= 0, right-padded with -1")
        seqs = np.full((n, depth + tail.size), PAD, dtype=np.int64)  # [N, T]
        seqs[:, :depth] = np.where(real, ids, PAD)
        seqs[np.arange(n)[:, None], lengths[:, None] + np.arange(tail.size)] = tail
        t_len = seqs.shape[1]
        order = np.lexsort(seqs.T[::-1])  # sort rows lexicographically
        s = seqs[order]  # [N, T]
        # new[i, t]: row i starts a new prefix of length t + 1 (differs from row i - 1 at a column <= t).
        new = np.ones((n, t_len), dtype=bool)
        if n > 1:
            new[1:] = np.logical_or.accumulate(s[1:] != s[:-1], axis=1)
        if not new[:, -1].all():
            dup = int(order[np.flatnonzero(~new[:, -1])[0]])
            raise DataError(f"catalog row {dup} repeats the token path of another row: {ids[dup].tolist()}")
        node_of = np.cumsum(new, axis=0) - 1  # [N, T]: node id (at level t + 1) of each row's prefix
        levels = []
        for t in range(t_len):
            rows = np.flatnonzero(new[:, t])  # first row of each edge of level t
            parent = node_of[rows, t - 1] if t else np.zeros(rows.size, dtype=np.int64)
            num_nodes = int(node_of[-1, t - 1]) + 1 if t else 1
            count = np.bincount(parent, minlength=num_nodes)
            start = np.concatenate([[0], np.cumsum(count)[:-1]])
            levels.append(
                TrieLevel(
                    tokens=s[rows, t].astype(np.int32),
                    start=start.astype(np.int32),
                    count=count.astype(np.int32),
                    width=int(count.max()),
                )
            )
        return cls(
            levels=tuple(levels),
            leaf_rows=order,
            depth=depth,
            uniform_depth=bool((lengths == depth).all()),
            suffix_ids=tuple(int(x) for x in suffix_ids),
            eos_id=int(eos_id),
        )

    def paths(self) -> np.ndarray:
        """``[N, T]`` every full path in catalog-row order (host-side; for tests and tools)."""
        n = self.num_items
        out = np.empty((n, self.path_length), dtype=np.int32)
        # Walk back from the leaves: edge e of level t is node e of level t + 1.
        node = np.arange(n)
        for t in range(self.path_length - 1, -1, -1):
            lv = self.levels[t]
            out[:, t] = lv.tokens[node]
            if t:
                node = np.searchsorted(lv.start, node, side="right") - 1  # parent node of each edge
        result = np.empty_like(out)
        result[self.leaf_rows] = out
        return result
