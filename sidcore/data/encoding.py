"""Upstream MiniOneRec encoding rules: prompt pieces tokenized separately, EOS on targets, left truncation.

An example is built from three strings — instruction, body and target — that are tokenized
**separately** (no BPE merges across piece boundaries) with ``add_special_tokens=False`` and then
concatenated: ``ids = enc(instruction, bos) + enc(body)``; the prompt length is recorded;
``ids += enc(target) + [eos]``; ``labels = [-100] * prompt_len + ids[prompt_len:]``; finally only the
last ``max_len`` positions are kept (left truncation: the instruction is cut first). Like upstream,
leading BOS / trailing EOS ids produced by a piece are stripped before the explicit BOS/EOS are
added (a no-op for Qwen2.5, which has no BOS). Reference-spec §2.1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from sidcore.errors import DataError

log = logging.getLogger(__name__)

IGNORE = -100


@attrs.frozen(kw_only=True)
class Example:
    """One tokenized training/validation example (unshifted: ``labels[t]`` is the label *of* token t)."""

    input_ids: list[int]
    labels: list[int]
    task: str

    def __len__(self) -> int:
        return len(self.input_ids)


@attrs.frozen(kw_only=True)
class EvalPrompt:
    """One decoding prompt: ids (ending with ``"### Response:\\n"``), the body input text, the target SID."""

    input_ids: list[int]
    input_text: str
    target_sid: str
    target_item: str = ""  # the row's item_id (item-level metrics)


@attrs.frozen(kw_only=True)
class Pieces:
    """The three strings of an example; ``target`` is None for an eval prompt."""

    instruction: str
    body: str
    target: str | None = None


class PieceEncoder:
    """Tokenizes pieces with the upstream rules; unique strings are encoded once, in batches."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.bos_id: int | None = tokenizer.bos_token_id
        self.eos_id: int | None = tokenizer.eos_token_id
        self._cache: dict[str, list[int]] = {}

    def _strip(self, ids: list[int]) -> list[int]:
        start, end = 0, len(ids)
        while self.bos_id is not None and start < end and ids[start] == self.bos_id:
            start += 1
        while self.eos_id is not None and end > start and ids[end - 1] == self.eos_id:
            end -= 1
        return ids[start:end]

    def warm(self, texts: Iterable[str]) -> None:
        """Encode all not-yet-seen ``texts`` in one batched tokenizer call."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if not todo:
            return
        batch = self.tokenizer(todo, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        for text, ids in zip(todo, batch):
            self._cache[text] = self._strip(list(ids))

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """``text`` -> ids (no specials), optionally with BOS (if the tokenizer has one) and EOS."""
        if text not in self._cache:
            self.warm([text])
        ids = list(self._cache[text])
        if bos and self.bos_id is not None:
            ids.insert(0, self.bos_id)
        if eos:
            if self.eos_id is None:
                raise DataError("tokenizer has no EOS token (needed to terminate targets)")
            ids.append(self.eos_id)
        return ids

    def prompt_ids(self, pieces: Pieces) -> list[int]:
        return self.encode(pieces.instruction, bos=True) + self.encode(pieces.body)

    def example(self, pieces: Pieces, *, task: str, max_len: int) -> Example:
        """Training example: prompt (labels -100) + target + EOS, left-truncated to ``max_len``."""
        if pieces.target is None:
            raise ValueError("a training example needs a target")
        ids = self.prompt_ids(pieces)
        prompt_len = len(ids)
        ids += self.encode(pieces.target, eos=True)
        labels = [IGNORE] * prompt_len + ids[prompt_len:]
        if len(ids) > max_len:
            ids, labels = ids[-max_len:], labels[-max_len:]
        return Example(input_ids=ids, labels=labels, task=task)

    def examples(self, pieces: Sequence[Pieces], *, task: str, max_len: int) -> list[Example]:
        self.warm(t for p in pieces for t in (p.instruction, p.body, p.target or ""))
        out = [self.example(p, task=task, max_len=max_len) for p in pieces]
        n_cut = sum(1 for e in out if len(e) >= max_len)
        if n_cut:
            log.warning(
                "%s: %d of %d examples reach max_len=%d (left-truncated)", task, n_cut, len(out), max_len
            )
        return out

    def eval_prompt(self, pieces: Pieces, *, input_text: str, target_sid: str, max_len: int,
                    target_item: str = "") -> EvalPrompt:
        ids = self.prompt_ids(pieces)[-max_len:]
        return EvalPrompt(input_ids=ids, input_text=input_text, target_sid=target_sid, target_item=target_item)
