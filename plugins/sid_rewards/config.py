"""Options of the built-in reward components (attrs only, so listing plugins stays light)."""

from __future__ import annotations

from typing import Any

import attrs
from attrs import field

STRIP_CHARS = '\n" '
"""Characters upstream's ``rule_reward`` strips from both ends before comparing (``strip('\\n" ')``)."""

RANKING_STRIP_CHARS = '\n"'
"""Upstream's ``ndcg_rule_reward`` strips only ``'\\n"'`` (no space): a completion decoding to
``SID + ' ' + '\\n'`` is a hit for ``rule`` but a miss for ``ranking``."""


def _no_hit(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in ("zeros", "penalty"):
        raise ValueError(f"{attribute.name} must be \"zeros\" or \"penalty\", got {value!r}")


def _weights(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    items = list(value)
    if not items or any(isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 for w in items):
        raise ValueError(f"{attribute.name} must be a non-empty list of numbers >= 0, got {value!r}")
    if sum(items) <= 0:
        raise ValueError(f"{attribute.name} must not sum to 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RuleConfig:
    """Options of `rule` (upstream ``rule_reward``)."""

    strip: str = field(default=STRIP_CHARS, metadata={
        "help": "Characters stripped from both ends of a completion before the exact comparison."})


@attrs.frozen(kw_only=True)
class RankingConfig:
    """Options of `ranking` (upstream ``ndcg_rule_reward``)."""

    strip: str = field(default=RANKING_STRIP_CHARS, metadata={
        "help": "Characters stripped from both ends of a completion before the exact comparison (upstream's "
                "ndcg_rule_reward: newline and double quote, no space; rule strips the space too)."})
    no_hit: str = field(default="zeros", validator=_no_hit, metadata={
        "help": "A group whose G beams all miss: \"zeros\" (upstream: no signal) or \"penalty\" (every beam "
                "still gets its rank penalty, so the advantage favours earlier ranks)."})


@attrs.frozen(kw_only=True)
class PrefixConfig:
    """Options of `prefix` (not in upstream; OpenOneRec logs a similar partial-hit reward)."""

    strip: str = field(default=STRIP_CHARS, metadata={
        "help": "Characters stripped from both ends of a completion before splitting it into levels."})
    level_weights: list[float] | None = field(default=None, validator=_weights, metadata={
        "help": "Credit of each matched leading level (null: equal weights); the reward is the weight of "
                "the matched leading levels over the total weight, so an exact hit scores 1."})


CF_STRIP = '\n"'
"""Characters upstream's ``cf_reward`` / ``semantic_reward`` strip from a completion (``strip('\\n"')``)."""


def _invalid(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in ("random", "nan"):
        raise ValueError(f"{attribute.name} must be \"random\" or \"nan\", got {value!r}")


@attrs.frozen(kw_only=True)
class SasrecConfig:
    """Options of `sasrec` (upstream ``cf_reward``, ``reward_type=sasrec``)."""

    checkpoint: str = field(default="", metadata={
        "help": "Run folder (or its baseline.json) of `sid baseline sasrec|gru4rec|caser` (upstream cf_path)."})
    invalid: str = field(default="random", validator=_invalid, metadata={
        "help": "A completion that is not a catalog SID: \"random\" (upstream: the logit of a uniformly drawn item; "
                "drawn from (seed, sample id, rank), so deterministic) or \"nan\" (not applicable, counts 0)."})
    seed: int = field(default=0, metadata={"help": "Seed of the random items of invalid completions."})
    strip: str = field(default=CF_STRIP, metadata={
        "help": "Characters stripped from both ends of a completion before the catalog lookup."})


@attrs.frozen(kw_only=True)
class SemanticConfig:
    """Options of `semantic` (upstream ``semantic_reward``, ``reward_type=semantic``)."""

    embeddings: str = field(default="", metadata={
        "help": "Item embeddings .npy, row i = item i (`sid index embed`; upstream ada_path)."})
    info_file: str = field(default="", metadata={
        "help": "The catalog (<sid>\\t<title>\\t<item_id> per line) that maps SIDs to items."})
    strip: str = field(default=CF_STRIP, metadata={
        "help": "Characters stripped from both ends of a completion before the catalog lookup."})
