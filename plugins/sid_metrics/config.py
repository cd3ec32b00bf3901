"""Options of the built-in metric components (attrs only, so listing plugins stays light)."""

from __future__ import annotations

from typing import Any

import attrs

DEFAULT_TOPK: tuple[int, ...] = (1, 3, 5, 10, 20, 50)
"""The K values of `calc.py` (and of the reference metrics JSON)."""


def _check_topk(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{attribute.name} must be a list of positive integers, got {value!r}")
    items = list(value)
    if not items:
        raise ValueError(f"{attribute.name} must not be empty")
    bad = [k for k in items if isinstance(k, bool) or not isinstance(k, int) or k <= 0]
    if bad:
        raise ValueError(f"{attribute.name} must hold positive integers, got {bad[0]!r}")


@attrs.frozen(kw_only=True)
class TopKConfig:
    """Options of `hr`, `ndcg`, `hr_item` and `ndcg_item`."""

    topk: list[int] = attrs.field(
        factory=lambda: list(DEFAULT_TOPK),
        validator=_check_topk,
        metadata={"help": "K values (sorted, deduplicated); K larger than the number of beams of the "
                          "first sample is dropped, like calc.py."},
    )


@attrs.frozen(kw_only=True)
class InvalidConfig:
    """`invalid` has no options: it counts predictions that are not catalog SIDs."""
