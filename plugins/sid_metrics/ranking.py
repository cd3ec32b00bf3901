"""The metric components `hr`, `ndcg`, `invalid`, `hr_item` and `ndcg_item`.

SID-level metrics follow `sid_metrics.calc` exactly (the headline numbers). Item-level metrics
account for SID collisions (several items sharing one SID): each predicted SID is expanded to its
items in catalog order (``catalog.items_per_sid``), so a SID with ``m`` items occupies ``m``
consecutive item ranks, and a SID with no listed items (or an invalid prediction) occupies one
rank that matches nothing. The target of an item-level metric is the sample's **item id** (such
metrics carry ``target_kind = "item"``; SID-level ones ``"sid"``), and its item rank is the
number of item slots before its SID's slot block plus its position inside that block. Item
HR@K/NDCG@K use the same K list (``K <= n_beams``) and formulas as the SID level, so
``hr_item@K <= hr@K`` whenever the target item's SID is the target SID.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import attrs

from sidcore.api import DataError
from sidcore.api import SidCatalog
from sid_metrics.calc import (
    check_inputs,
    effective_topk,
    hit_rates,
    ndcgs,
    normalize_prediction,
    normalize_target,
    scan,
)
from sid_metrics.config import InvalidConfig, TopKConfig

log = logging.getLogger(__name__)

__all__ = [
    "InvalidPredictions",
    "RankMetric",
    "build_hr",
    "build_hr_item",
    "build_invalid",
    "build_ndcg",
    "build_ndcg_item",
    "item_rank",
]


def item_rank(
    predictions: Sequence[str], target_item: str, items_per_sid: Mapping[str, Sequence[str]]
) -> int | None:
    """0-based rank of `target_item` in the item-expanded prediction list, or None (miss).

    Args:
        predictions: raw predicted SIDs, best first.
        target_item: the normalised target item id.
        items_per_sid: SID -> item ids in catalog order.
    """
    offset = 0
    for raw in predictions:
        items = items_per_sid.get(normalize_prediction(raw), ())
        if target_item in items:
            return offset + list(items).index(target_item)
        offset += max(len(items), 1)
    return None


def _item_ranks(
    predictions: Sequence[Sequence[str]], targets: Sequence[str], catalog: SidCatalog, *, name: str
) -> list[int | None]:
    items_per_sid = catalog.items_per_sid
    if not items_per_sid:
        raise DataError(
            f"metric '{name}': the catalog has no items_per_sid (item-level metrics need item ids)"
        )
    known = {item for items in items_per_sid.values() for item in items}
    wanted = [normalize_target(str(t) if isinstance(t, int) else t) for t in targets]
    unknown = [t for t in wanted if t not in known]
    if unknown:
        if len(unknown) == len(wanted) and any(t in items_per_sid for t in unknown):
            raise DataError(
                f"metric '{name}': targets look like SIDs (e.g. {unknown[0]!r}); item-level metrics "
                "take item ids as targets (target_kind='item')"
            )
        log.warning("metric '%s': %d of %d target items are not in the catalog (scored as misses)",
                    name, len(unknown), len(wanted))
    return [item_rank(p, t, items_per_sid) for p, t in zip(predictions, wanted)]


@attrs.frozen(kw_only=True)
class RankMetric:
    """HR@K or NDCG@K at SID or item level.

    Attributes:
        name: component name, also the key prefix (``hr`` -> ``"hr@10"``).
        kind: ``"hr"`` or ``"ndcg"``.
        topk: requested K values.
        item_level: expand SIDs to items; targets are item ids.
    """

    name: str
    kind: str = attrs.field(validator=attrs.validators.in_(("hr", "ndcg")))
    topk: tuple[int, ...]
    item_level: bool = False

    @property
    def target_kind(self) -> str:
        """``"item"`` when the kernel must pass item ids as targets, else ``"sid"``."""
        return "item" if self.item_level else "sid"

    def __call__(
        self, predictions: Sequence[Sequence[str]], targets: Sequence[str], *, catalog: SidCatalog
    ) -> dict[str, float]:
        check_inputs(predictions, targets, where=f"metric '{self.name}'")
        ks = effective_topk(self.topk, len(predictions[0]))
        if self.item_level:
            ranks = _item_ranks(predictions, targets, catalog, name=self.name)
        else:
            ranks = [scan(p, normalize_target(t), None).rank for p, t in zip(predictions, targets)]
        values = hit_rates(ranks, ks) if self.kind == "hr" else ndcgs(ranks, ks)
        return {f"{self.name}@{k}": float(v) for k, v in values.items()}


@attrs.frozen(kw_only=True)
class InvalidPredictions:
    """`calc.py`'s invalid count (``CC``) plus the invalid share of the scanned predictions."""

    name: str = "invalid"
    target_kind: str = "sid"

    def __call__(
        self, predictions: Sequence[Sequence[str]], targets: Sequence[str], *, catalog: SidCatalog
    ) -> dict[str, float]:
        check_inputs(predictions, targets, where=f"metric '{self.name}'")
        valid = frozenset(catalog.sids)
        scans = [scan(p, normalize_target(t), valid) for p, t in zip(predictions, targets)]
        invalid = sum(s.invalid for s in scans)
        scanned = sum(s.scanned for s in scans)
        return {
            "invalid_prediction_count": float(invalid),
            "invalid_fraction": invalid / scanned if scanned else 0.0,
        }


def _topk(cfg: TopKConfig) -> tuple[int, ...]:
    return tuple(cfg.topk)


def build_hr(cfg: TopKConfig) -> RankMetric:
    """Factory of `hr` (keys ``hr@K``)."""
    return RankMetric(name="hr", kind="hr", topk=_topk(cfg))


def build_ndcg(cfg: TopKConfig) -> RankMetric:
    """Factory of `ndcg` (keys ``ndcg@K``)."""
    return RankMetric(name="ndcg", kind="ndcg", topk=_topk(cfg))


def build_hr_item(cfg: TopKConfig) -> RankMetric:
    """Factory of `hr_item` (keys ``hr_item@K``; targets are item ids)."""
    return RankMetric(name="hr_item", kind="hr", topk=_topk(cfg), item_level=True)


def build_ndcg_item(cfg: TopKConfig) -> RankMetric:
    """Factory of `ndcg_item` (keys ``ndcg_item@K``; targets are item ids)."""
    return RankMetric(name="ndcg_item", kind="ndcg", topk=_topk(cfg), item_level=True)


def build_invalid(cfg: InvalidConfig) -> InvalidPredictions:
    """Factory of `invalid` (keys ``invalid_prediction_count``, ``invalid_fraction``)."""
    del cfg
    return InvalidPredictions()
