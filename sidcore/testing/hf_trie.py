"""The outside reference for constrained decoding: a transformers ``LogitsProcessor`` with
MiniOneRec's trie semantics (reference-spec §6.1), for parity tests and benchmarks against HF
``generate``. Needs torch + transformers (imported when called).

The trie maps the token ids of ``"### Response:\\n" + sid + "\\n"`` (+ EOS) by prefix: at the first
generated step the key is the last 3 prompt tokens, later the tokens generated so far. Scores are
the full-vocabulary ``log_softmax`` plus 0 on allowed tokens and ``-1e6`` elsewhere (no
renormalisation), and the processor writes its mask once per beam row, as upstream does.
"""

from __future__ import annotations

from typing import Any, Iterable


def allowed_table(tokenizer: Any, sids: Iterable[str], eos_id: int) -> dict[tuple[int, ...], list[int]]:
    """Prefix key -> allowed next token ids, over every SID of the catalog."""
    allowed: dict[tuple[int, ...], list[int]] = {}
    for sid in sids:
        ids = tokenizer("### Response:\n" + sid + "\n", add_special_tokens=False).input_ids + [eos_id]
        for i in range(3, len(ids)):
            nxt = allowed.setdefault(tuple(ids[:3]) if i == 3 else tuple(ids[3:i]), [])
            if ids[i] not in nxt:
                nxt.append(ids[i])
    return allowed


def upstream_trie_processor(tokenizer: Any, sids: Iterable[str], eos_id: int,
                            table: dict[tuple[int, ...], list[int]] | None = None) -> Any:
    """A fresh stateful processor (one per ``generate`` call, like upstream's ``count``)."""
    import torch
    import transformers

    allowed = allowed_table(tokenizer, sids, eos_id) if table is None else table

    class UpstreamTrieProcessor(transformers.LogitsProcessor):
        def __init__(self) -> None:
            self.count = 0

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            scores = torch.log_softmax(scores, dim=-1)
            mask = torch.full_like(scores, -1e6)
            for row in range(input_ids.shape[0]):
                key = tuple(input_ids[row, -3:].tolist()) if self.count == 0 else \
                    tuple(input_ids[row, -self.count:].tolist())
                toks = allowed.get(key)
                if toks:
                    mask[row, toks] = 0.0
            self.count += 1
            return scores + mask

    return UpstreamTrieProcessor()
