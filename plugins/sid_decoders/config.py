"""Options of the built-in decoders (attrs only: importing this never imports jax).

The decoder owns every generation knob. No HF ``generation_config.json`` is ever read, so a
checkpoint's inherited ``top_k``/``top_p``/``temperature``/``repetition_penalty`` cannot leak into
beam search (the MiniOneRec PR #57 bug class); beam count comes from ``eval.num_beams``.
"""

from __future__ import annotations

from typing import Any

import attrs
from attrs import field, validators as v


def _help(text: str, default: Any, **kw: Any) -> Any:
    return field(default=default, metadata={"help": text}, **kw)


def _early_stopping(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not True and value is not False and value != "never":
        raise ValueError(f"'{attribute.name}' must be true, false or \"never\" (got {value!r})")


@attrs.frozen(kw_only=True)
class TrieConfig:
    """Catalog-constrained beam search: SID levels -> suffix -> EOS, score = sum of log-probs.

    The constraint comes from the catalog, the beam count from ``eval.num_beams``, the length
    penalty is 0 (upstream MiniOneRec) and scores are float32.
    """

    fused_scoring: bool = _help(
        "Score only the allowed tokens against a chunked log-sum-exp (same scores up to float rounding, "
        "no [beams, vocab] log-softmax); false = full log-softmax per step.", True)


@attrs.frozen(kw_only=True)
class PureBeamConfig:
    """Unconstrained beam search over the full vocabulary."""

    max_new_tokens: int = _help("Most generated tokens, EOS included (open-ended mode).", 8,
                                validator=v.gt(0))
    length_penalty: float = _help("Finished score = sum_logprobs / generated_len ** length_penalty.", 0.0)
    early_stopping: bool | str = _help(
        'HF semantics: true (stop when K hypotheses finished), false (heuristic) or "never".', True,
        validator=_early_stopping,
    )
    fixed_length: bool = _help(
        "Reference-port variant: exactly sid_depth free tokens, then the suffix and EOS force-scored.", False
    )
    sid_depth: int | None = _help("Free tokens in fixed_length mode (null: the catalog's SID depth).", None,
                                  validator=v.optional(v.gt(0)))
