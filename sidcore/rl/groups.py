"""Host-side shaping of a step's groups (numpy): upstream's ``dynamic_sampling`` selection, the
``add_gt`` target paths and upstream's diversity / completion-length metrics.

- `dynamic_selection`: upstream ``select_completion`` (minionerec_trainer.py, non-beam path) on
  ``int(1.5 G)`` samples of one prompt: the target's copies first (at most G), then one copy of each
  other item by decreasing count (ties in first-seen order), then further rounds over the same
  order until G are kept. Returns sample *indices*, so the update trains on the kept token paths.
- `target_paths`: the catalog token path (SID levels, suffix, EOS) of each prompt's target, which
  ``add_gt`` writes over the last completion of its group.
- `diversity_metrics`: ``categorical_diversity`` (mean over groups of distinct completions / G),
  ``token_diversity`` (distinct token ids / tokens over the step, pad = EOS ids not counted, as
  upstream filters ``pad_token_id``) and ``completion_length`` (mean completion-mask length).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

from sidcore.errors import DataError

__all__ = ["dynamic_selection", "select_groups", "target_paths", "diversity_metrics", "dynamic_pool_size"]


def dynamic_pool_size(num_generations: int) -> int:
    """Samples drawn per prompt under ``dynamic_sampling``: upstream's ``int(1.5 * G)``."""
    return int(1.5 * int(num_generations))


def dynamic_selection(completions: Sequence[str], target: str, num_generations: int) -> list[int]:
    """Indices into ``completions`` of the G kept samples, in upstream's order (see module doc)."""
    g = int(num_generations)
    where: dict[str, list[int]] = {}
    for i, c in enumerate(completions):
        where.setdefault(c, []).append(i)
    counts = Counter(completions)
    order = [c for c, _ in sorted(counts.items(), key=lambda kv: kv[1], reverse=True)]  # stable: first seen
    used = {c: 0 for c in order}
    picked: list[int] = []

    def take(c: str) -> None:
        picked.append(where[c][used[c]])
        used[c] += 1

    if target in counts:
        for _ in range(min(counts[target], g)):
            take(target)
    while len(picked) < g:
        progressed = False
        for c in order:
            if c != target and used[c] < counts[c]:
                take(c)
                progressed = True
                if len(picked) == g:
                    break
        if not progressed:
            raise DataError(f"dynamic_sampling: {len(completions)} samples cannot fill a group of {g}")
    return picked


def select_groups(sids: np.ndarray, targets: Sequence[str], num_generations: int) -> np.ndarray:
    """``sids [B, G']`` -> ``[B, G]`` int32 indices of the kept samples of every prompt."""
    return np.array([dynamic_selection(list(row), t, num_generations) for row, t in zip(sids.tolist(), targets)],
                    dtype=np.int32)


def target_paths(paths: dict[str, np.ndarray], targets: Sequence[str], width: int) -> np.ndarray:
    """``[B, width]`` int32 catalog token path of each target SID (``-1`` padded)."""
    out = np.full((len(targets), width), -1, np.int32)
    for i, t in enumerate(targets):
        p = paths.get(t)
        if p is None:
            raise DataError(f"add_gt: target {t} is not a catalog SID")
        out[i, : min(width, p.size)] = p[:width]
    return out


def diversity_metrics(sids: np.ndarray, tokens: np.ndarray, *, eos_id: int, pad_id: int) -> dict[str, float]:
    """Upstream's categorical/token diversity and completion length of ``sids [B, G]``, ``tokens [B, G, T]``."""
    b, g = sids.shape
    cat = float(np.mean([len(set(row)) / g for row in sids.tolist()]))
    flat = np.asarray(tokens).reshape(b * g, -1)
    real = (flat != pad_id) & (flat >= 0)
    n_tok = int(real.sum())
    token_div = float(len(np.unique(flat[real])) / n_tok) if n_tok else 0.0
    is_eos = flat == eos_id
    first = np.where(is_eos.any(-1), is_eos.argmax(-1), flat.shape[1] - 1)
    length = np.minimum(first + 1, (flat >= 0).sum(-1))  # through the first EOS, padding (-1) excluded
    return {"categorical_diversity": cat, "token_diversity": token_div, "completion_length": float(length.mean())}


def catalog_paths(catalog: Any, eos_id: int) -> dict[str, np.ndarray]:
    """SID string -> its full trie path (levels, suffix, EOS), for ``add_gt``."""
    from sidcore.decoding.trie import SidTrie

    paths = SidTrie.from_catalog(catalog, eos_id=eos_id).paths()
    return {sid: paths[i] for i, sid in enumerate(catalog.sids)}
