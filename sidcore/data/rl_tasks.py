"""RL prompts of upstream MiniOneRec ``rl.py``: three sources, each prompt bound to a target SID.

1. ``sid_history``    SID history -> next SID, train split rows (upstream ``SidDataset``; the input
   wording of SFT task 1).
2. ``item_to_sid``    title -> SID and description -> SID over all items (``RLTitle2SidDataset``;
   each map deduplicated by its key, later items win; list-literal descriptions ``"['...']"`` are
   replaced by their first element).
3. ``title_history``  title history -> next SID, ``sample`` train rows (``RLSeqTitle2SidDataset``,
   ``sample=10000`` upstream, pandas-style sampling).

Quirks fixed by default, upstream behaviour by option:

- ``preamble=True``: every prompt starts with the SFT instruction preamble (``HEADER`` + the SFT
  task's instruction), as the model saw in SFT and sees in eval; upstream's RL prompt is only
  ``"### User Input: \\n{x}\\n\\n### Response:\\n"`` (``preamble=False``).
- ``bind="sample_id"``: each example keeps its own target. ``bind="prompt"`` is upstream's exact
  map: one ``history string -> target`` dict filled by every task in concatenation order and then by
  the valid split (``eval_rows``), so identical history strings share the last written target, also
  across tasks (a one-title history is the same key as that title's title->SID prompt) and from
  the valid split into the train prompts.
- ``leak=False``: item->SID prompts end at the response marker; upstream's ``RLTitle2SidDataset``
  writes the target SID after it (``leak=True``).
- SIDs use every level of index.json (upstream's ``RLTitle2SidDataset`` keeps only three).
- ``title_history_seed``: upstream samples with ``random_state=0`` (the dataset's default seed).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from sidcore.data import prompts as P
from sidcore.data.encoding import PieceEncoder, Pieces
from sidcore.data.minionerec import InteractionRow, ItemMeta
from sidcore.data.tasks import sample_like_pandas
from sidcore.errors import ConfigError, DataError

__all__ = ["RL_TASKS", "RLExample", "build_rl_examples", "description_text", "rl_records", "upstream_target_map"]

RL_TASKS = ("sid_history", "item_to_sid", "title_history")


@attrs.frozen(kw_only=True)
class RLExample:
    """One RL prompt: ids end with ``"### Response:\\n"``; the target is bound by ``sample_id``."""

    sample_id: int
    input_ids: list[int]
    target_sid: str
    task: str
    input_text: str
    target_item: str | None = None
    bind_key: str = ""  # what upstream binds the target through (history string / item text)
    history_items: tuple[int, ...] = ()  # the history's item ids (CSV tasks), for the sasrec reward


@attrs.frozen(kw_only=True)
class _Record:
    task: str
    instruction: str  # SFT instruction sentence (used with the preamble)
    input_text: str
    target_sid: str
    target_item: str | None
    bind_key: str
    response: str = ""  # text after the response marker inside the prompt (upstream's item->SID leak)
    history_items: tuple[int, ...] = ()


def description_text(description: str) -> str:
    """Upstream's description clean-up: a ``"['...']"`` list literal becomes its first element."""
    if description.startswith("['") and description.endswith("']"):
        try:
            items = ast.literal_eval(description)
        except (ValueError, SyntaxError):
            return description
        if isinstance(items, list) and items:
            return str(items[0])
    return description


def title_history_input(titles: Sequence[str]) -> str:
    joined = ", ".join('"' + t + '"' for t in titles)
    return ("Given the title sequence of user historical interactive items: " + joined
            + ", can you recommend a suitable next item for the user?")


def description_to_sid_input(description: str) -> str:
    return 'An item can be described as follows: "' + description + '". Which item is it describing?'


def rl_records(
    *,
    tasks: Sequence[str],
    train_rows: Sequence[InteractionRow],
    index: Mapping[str, Sequence[str]],
    items: Mapping[str, ItemMeta],
    seed: int,
    title_history_sample: int = 10000,
    leak: bool = False,
) -> list[_Record]:
    """The prompt texts and targets of the enabled tasks, in upstream concatenation order.

    ``seed`` samples title_history; ``leak`` writes each item->SID target after the response marker.
    """
    unknown = [t for t in tasks if t not in RL_TASKS]
    if unknown:
        raise ConfigError(f"rl.tasks: unknown task '{unknown[0]}'; choose from {', '.join(RL_TASKS)}")
    out: list[_Record] = []
    if "sid_history" in tasks:
        for r in train_rows:
            out.append(_Record(task="sid_history", instruction=P.SID_NEXT_ITEM_INSTRUCTION,
                               input_text=P.sid_next_item_input(r.history_item_sid), target_sid=r.item_sid,
                               target_item=str(r.item_id), bind_key="::".join(r.history_item_sid),
                               history_items=r.history_item_id))
    if "item_to_sid" in tasks:
        title2: dict[str, tuple[str, str]] = {}
        desc2: dict[str, tuple[str, str]] = {}
        for item_id, levels in index.items():
            meta = items.get(item_id)
            if meta is None:
                continue
            sid = "".join(levels)
            title2[meta.title] = (sid, item_id)
            desc2[description_text(meta.description)] = (sid, item_id)
        for title, (sid, item) in title2.items():
            out.append(_Record(task="item_to_sid", instruction=P.ALIGNMENT_INSTRUCTION,
                               input_text=P.title2sid_input(title), target_sid=sid, target_item=item, bind_key=title,
                               response=sid if leak else ""))
        for desc, (sid, item) in desc2.items():
            out.append(_Record(task="item_to_sid", instruction=P.ALIGNMENT_INSTRUCTION,
                               input_text=description_to_sid_input(desc), target_sid=sid, target_item=item,
                               bind_key=desc, response=sid if leak else ""))
    if "title_history" in tasks:
        for r in sample_like_pandas(list(train_rows), title_history_sample, seed):
            out.append(_Record(task="title_history", instruction=P.TITLE_TO_SID_INSTRUCTION,
                               input_text=title_history_input(r.history_item_title), target_sid=r.item_sid,
                               target_item=str(r.item_id), bind_key="::".join(r.history_item_title),
                               history_items=r.history_item_id))
    return out


def upstream_target_map(records: Sequence[_Record], eval_rows: Sequence[InteractionRow] = ()
                        ) -> dict[str, tuple[str, str | None]]:
    """Upstream's merged ``history string -> (target SID, item)`` map: every record in order, then
    the valid split's SID histories (rl.py updates the train datasets' dicts, then the eval one's)."""
    last = {r.bind_key: (r.target_sid, r.target_item) for r in records}
    for r in eval_rows:
        last["::".join(r.history_item_sid)] = (r.item_sid, str(r.item_id))
    return last


def build_rl_examples(
    tokenizer: Any,
    *,
    tasks: Sequence[str] = RL_TASKS,
    train_rows: Sequence[InteractionRow],
    index: Mapping[str, Sequence[str]],
    items: Mapping[str, ItemMeta],
    seed: int,
    title_history_sample: int = 10000,
    title_history_seed: int | None = None,
    preamble: bool = True,
    bind: str = "sample_id",
    eval_rows: Sequence[InteractionRow] = (),
    leak: bool = False,
    max_len: int = 2560,
    catalog_sids: frozenset[str] | None = None,
) -> list[RLExample]:
    """Tokenized RL prompts (left-truncated to ``max_len``) with their targets; ``sample_id`` = position.

    ``title_history_seed`` None samples title_history with ``seed``; ``eval_rows`` (the valid split)
    take part in ``bind="prompt"`` only, written last as upstream does.

    Raises:
        ConfigError: unknown task or ``bind`` value, or no example at all.
        DataError: a target SID outside ``catalog_sids`` (when given).
    """
    if bind not in ("sample_id", "prompt"):
        raise ConfigError(f"rl.bind_targets must be 'sample_id' or 'prompt', got {bind!r}")
    th_seed = seed if title_history_seed is None else int(title_history_seed)
    records = rl_records(tasks=tasks, train_rows=train_rows, index=index, items=items, seed=th_seed,
                         title_history_sample=title_history_sample, leak=leak)
    if not records:
        raise ConfigError("rl: no RL prompts (enable a task in rl.tasks and check the train split)")
    if bind == "prompt":  # upstream rl.py: one history -> target dict over all tasks, then the valid split
        last = upstream_target_map(records, eval_rows)
        records = [attrs.evolve(r, target_sid=last[r.bind_key][0], target_item=last[r.bind_key][1])
                   for r in records]
    if catalog_sids is not None:
        bad = next((r for r in records if r.target_sid not in catalog_sids), None)
        if bad is not None:
            raise DataError(f"rl task {bad.task}: target {bad.target_sid} is not a catalog SID")
    encoder = PieceEncoder(tokenizer)
    pieces = [Pieces(instruction=(P.HEADER + r.instruction) if preamble else "",
                     body=P.body(r.input_text, r.response)) for r in records]
    encoder.warm(t for p in pieces for t in (p.instruction, p.body))
    return [
        RLExample(sample_id=i, input_ids=encoder.prompt_ids(p)[-max_len:], target_sid=r.target_sid, task=r.task,
                  input_text=r.input_text, target_item=r.target_item, bind_key=r.bind_key,
                  history_items=r.history_items)
        for i, (p, r) in enumerate(zip(pieces, records))
    ]
