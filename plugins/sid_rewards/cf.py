"""Upstream MiniOneRec's two model-based rewards (``rl.py`` ``cf_reward`` and ``semantic_reward``).

Both map a completion to an item the way upstream's ``item2id`` does: the SID string (stripped of
``'\\n"'``) -> the *last* catalog line holding that SID (on the 15 collided Industrial SIDs upstream's
dict keeps the last item; so do these).

- `SasrecReward` (``sasrec``): the frozen `sid baseline` model (SASRec, GRU4Rec or Caser) reads the
  prompt's history (`RewardGroup.history_items`, last ``seq_len`` items, right-padded) in eval mode,
  and each completion's reward is the model's logit of its item. A completion outside the catalog
  scores the logit of a uniformly drawn item (upstream's ``random.randint``; here drawn from
  ``(seed, sample id, rank)`` so it is deterministic) or NaN (``invalid: nan``). A prompt without
  item history (title -> SID) gets NaN: upstream's map from its history string to item ids fails on
  such prompts, so ``reward_type=sasrec`` only runs on SID-history prompts there.
- `SemanticReward` (``semantic``): cosine similarity (``torch.cosine_similarity``: each norm
  clamped at 1e-8) between the embeddings of the target's item and each completion's item,
  computed in float64. Upstream crashes on a completion outside the catalog; here it is NaN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sidcore.api import ConfigError, DataError, file_error
from sidcore.api import RewardGroup
from sid_rewards.config import SasrecConfig, SemanticConfig

__all__ = ["SasrecReward", "SemanticReward", "build_sasrec", "build_semantic", "sid_to_item"]


def sid_to_item(item_sids: list[str]) -> dict[str, int]:
    """SID -> the last item (line) holding it (upstream ``item2id``)."""
    return {sid: i for i, sid in enumerate(item_sids)}


class SasrecReward:
    """The frozen model's logit of each completion's item given the group's history."""

    def __init__(self, model: Any, record: dict[str, Any], *, invalid: str, seed: int, strip: str,
                 where: str) -> None:
        import jax
        from flax import nnx

        graphdef, params = nnx.split(model)
        self._params = params
        self._forward = jax.jit(lambda p, seq, lengths: nnx.merge(graphdef, p)(seq, lengths))
        self.item_num = int(record["item_num"])
        self.seq_len = int(record["options"]["seq_len"])
        self.items = sid_to_item(list(record["item_sids"]))
        self.invalid, self.seed, self.strip, self.where = invalid, int(seed), strip, where

    def __call__(self, group: RewardGroup) -> np.ndarray:
        g = len(group.completions)
        hist = [int(i) for i in group.history_items][-self.seq_len:]
        if not hist:
            return np.full(g, np.nan, np.float32)
        bad = next((i for i in hist if not 0 <= i < self.item_num), None)
        if bad is not None:
            raise ConfigError(f"reward 'sasrec': history item {bad} of sample {group.sample_id} is outside the "
                              f"checkpoint's catalog of {self.item_num} items ({self.where}: trained on another "
                              "catalog?)")
        seq = np.full((1, self.seq_len), self.item_num, np.int32)
        seq[0, : len(hist)] = hist
        logits = np.asarray(self._forward(self._params, seq, np.asarray([len(hist)], np.int32)))[0]  # [N]
        out = np.full(g, np.nan, np.float64)
        for i, text in enumerate(group.completions):
            item = self.items.get(text.strip(self.strip))
            if item is None and self.invalid == "random":
                draw = np.random.default_rng([self.seed & 0x7FFFFFFF, group.sample_id & 0x7FFFFFFF, i])
                item = int(draw.integers(self.item_num))
            if item is not None:
                out[i] = logits[item]
        return out.astype(np.float32)


class SemanticReward:
    """Cosine between the embedding rows of the target's and each completion's item."""

    def __init__(self, embeddings: np.ndarray, sid2item: dict[str, int], *, strip: str) -> None:
        self.emb = np.asarray(embeddings, np.float64)  # [items, D]
        self.norm = np.maximum(np.linalg.norm(self.emb, axis=1), 1e-8)  # [items]
        self.items, self.strip = sid2item, strip

    def __call__(self, group: RewardGroup) -> np.ndarray:
        out = np.full(len(group.completions), np.nan, np.float64)
        t = self.items.get(group.target_sid.strip(self.strip))
        if t is None:
            return out.astype(np.float32)
        for i, text in enumerate(group.completions):
            c = self.items.get(text.strip(self.strip))
            if c is not None:
                out[i] = self.emb[t] @ self.emb[c] / (self.norm[t] * self.norm[c])
        return out.astype(np.float32)


def _required(value: str, key: str, name: str) -> Path:
    if not value:
        raise ConfigError(f"reward '{name}': options.{key} is required")
    return Path(value)


def build_sasrec(cfg: SasrecConfig) -> SasrecReward:
    from sidcore.api import load_baseline as load_checkpoint

    path = _required(cfg.checkpoint, "checkpoint", "sasrec")
    model, record = load_checkpoint(path)
    return SasrecReward(model, record, invalid=cfg.invalid, seed=cfg.seed, strip=cfg.strip, where=str(path))


def build_semantic(cfg: SemanticConfig) -> SemanticReward:
    from sidcore.api import read_info

    emb_path = _required(cfg.embeddings, "embeddings", "semantic")
    info_path = _required(cfg.info_file, "info_file", "semantic")
    info = read_info(info_path)
    try:
        emb = np.load(emb_path, allow_pickle=False)
    except FileNotFoundError:
        raise file_error(emb_path, "file not found") from None
    except (OSError, ValueError) as exc:
        raise file_error(emb_path, f"not a .npy array ({exc})") from None
    if emb.ndim != 2 or not np.issubdtype(emb.dtype, np.floating):
        raise file_error(emb_path, f"expected a float [items, dim] array, got {emb.dtype} {emb.shape}")
    try:
        ids = [int(e.item_id) for e in info]
    except ValueError:
        raise file_error(info_path, "item ids must be integers (they index the embedding rows)") from None
    if max(ids) >= emb.shape[0]:
        raise DataError(f"{emb_path}: {emb.shape[0]} rows, but {info_path} has item id {max(ids)} "
                        "(rows must be item ids 0..N-1, as `sid index embed` writes)")
    return SemanticReward(emb, {e.sid: int(e.item_id) for e in info}, strip=cfg.strip)
