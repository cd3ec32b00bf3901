"""The five MiniOneRec SFT tasks, the validation set and the eval prompts, as token-id examples.

Each task is a pure "rows -> `Pieces`" function (the verbatim upstream templates of
`sidcore.data.prompts`) plus the shared encoder of `sidcore.data.encoding`. `TASKS` is the registry,
in upstream ``sft.py`` concatenation order:

1. ``sid_next_item``         history SIDs -> next SID (`SidSFTDataset`)
2. ``sid_item_alignment``    SID <-> title (`SidItemFeatDataset`; upstream answer leak only if asked)
3. ``fusion_seq_rec``        history SIDs -> next title (`FusionSeqRecDataset`)
4. ``title_next_item``       history titles -> next title (`SFTData`, random instruction per row)
5. ``title_history_to_sid``  history titles -> next SID (`TitleHistory2SidSFTDataset`)

``data.sample_train = k > 0`` keeps k rows of every CSV-based task, chosen like upstream's
``DataFrame.sample(k, random_state=seed)`` (``numpy.random.RandomState(seed).permutation(n)[:k]``, in
that order); the alignment task (no CSV) keeps ``random.Random(seed).sample(examples, k)`` (our choice:
upstream's behaviour there is unknown). ``sample_eval`` / ``sample_test`` subsample the valid/test rows
the same way as CSV tasks.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import numpy as np

from sidcore.data import prompts
from sidcore.data.consistency import check_items_cover, check_row_ids
from sidcore.data.encoding import EvalPrompt, Example, PieceEncoder, Pieces
from sidcore.data.minionerec import (
    InteractionRow,
    ItemMeta,
    catalog_sids,
    read_csv,
    read_index,
    read_info,
    read_items,
)
from sidcore.data.prefixes import expand_training_rows, popularity_rows
from sidcore.data.tokenizer import sid_token_ids, sid_vocabulary
from sidcore.errors import ConfigError

if TYPE_CHECKING:  # typing only: data/ never imports config/ at run time
    from sidcore.config.schema import DataConfig, TasksConfig

T = TypeVar("T")
Index = Mapping[str, Sequence[str]]
Items = Mapping[str, ItemMeta]

# ------------------------------------------------------------------------------------------
# Pieces (pure string functions, one per task)
# ------------------------------------------------------------------------------------------


def sid_next_item_pieces(rows: Sequence[InteractionRow]) -> list[Pieces]:
    """Task 1: target ``item_sid + "\\n"``."""
    instruction = prompts.HEADER + prompts.SID_NEXT_ITEM_INSTRUCTION
    return [
        Pieces(
            instruction=instruction,
            body=prompts.body(prompts.sid_next_item_input(r.history_item_sid)),
            target=r.item_sid + "\n",
        )
        for r in rows
    ]


def alignment_maps(index: Index, items: Items) -> tuple[dict[str, str], dict[str, str]]:
    """(sid2title, title2sid) over index.json key order, items present in item.json; later items win."""
    sid2title: dict[str, str] = {}
    title2sid: dict[str, str] = {}
    for item_id, tokens in index.items():
        meta = items.get(item_id)
        if meta is None:
            continue
        sid = "".join(tokens)
        sid2title[sid] = meta.title
        title2sid[meta.title] = sid
    return sid2title, title2sid


def sid_item_alignment_pieces(index: Index, items: Items, *, leak: bool = False) -> list[Pieces]:
    """Task 2: all sid2title questions, then all title2sid questions.

    Args:
        leak: reproduce upstream's bug (the answer is also written after ``"### Response:\\n"`` inside
            the masked prompt). Off: the prompt ends at ``"### Response:\\n"`` like every other task.
    """
    instruction = prompts.HEADER + prompts.ALIGNMENT_INSTRUCTION
    sid2title, title2sid = alignment_maps(index, items)
    qa = [(prompts.sid2title_input(s), t) for s, t in sid2title.items()]
    qa += [(prompts.title2sid_input(t), s) for t, s in title2sid.items()]
    return [
        Pieces(instruction=instruction, body=prompts.body(q, a if leak else ""), target=a + "\n") for q, a in qa
    ]


def fusion_seq_rec_pieces(rows: Sequence[InteractionRow], index: Index, items: Items) -> list[Pieces]:
    """Task 3: target ``sid2title.get(item_sid, item_sid) + "\\n"``."""
    instruction = prompts.HEADER + prompts.FUSION_INSTRUCTION
    sid2title, _ = alignment_maps(index, items)
    return [
        Pieces(
            instruction=instruction,
            body=prompts.body(prompts.fusion_input(r.history_item_sid)),
            target=sid2title.get(r.item_sid, r.item_sid) + "\n",
        )
        for r in rows
    ]


def title_next_item_pieces(rows: Sequence[InteractionRow], *, category: str, seed: int) -> list[Pieces]:
    """Task 4 (SFTData): instruction ``INSTRUCTS[r]``, ``r = randint(0, 10)`` once per row in row order.

    The draws come from a private ``random.Random(seed)``, which yields exactly upstream's
    ``random.seed(seed); random.randint(0, 10)`` sequence without touching the global RNG.
    """
    rng = random.Random(seed)
    cat = prompts.category_text(category)
    return [
        Pieces(
            instruction=prompts.HEADER + prompts.title_next_item_instruction(rng.randint(0, 10), cat),
            body=prompts.body(prompts.title_next_item_input(r.history_item_title, cat)),
            target='"' + r.item_title + '"\n',
        )
        for r in rows
    ]


def title_history_to_sid_pieces(
    rows: Sequence[InteractionRow], index: Index, *, category: str
) -> list[Pieces]:
    """Task 5: target ``id2sid.get(str(item_id), str(item_id)) + "\\n"``."""
    instruction = prompts.HEADER + prompts.TITLE_TO_SID_INSTRUCTION
    cat = prompts.category_text(category)
    id2sid = {k: "".join(v) for k, v in index.items()}
    return [
        Pieces(
            instruction=instruction,
            body=prompts.body(prompts.title_history_to_sid_input(r.history_item_title, cat)),
            target=id2sid.get(str(r.item_id), str(r.item_id)) + "\n",
        )
        for r in rows
    ]


def eval_pieces(rows: Sequence[InteractionRow]) -> list[Pieces]:
    """Eval prompt (`EvalSidDataset`): task-1 instruction, different input wording, no target."""
    instruction = prompts.HEADER + prompts.SID_NEXT_ITEM_INSTRUCTION
    return [Pieces(instruction=instruction, body=prompts.body(prompts.eval_input(r.history_item_sid))) for r in rows]


# ------------------------------------------------------------------------------------------
# Registry and builders
# ------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class TaskSources:
    """Everything the tasks read, loaded once."""

    rows: list[InteractionRow]
    index: dict[str, tuple[str, ...]]
    items: dict[str, ItemMeta]
    category: str
    seed: int
    leak: bool = False


@attrs.frozen(kw_only=True)
class TaskSpec:
    name: str
    summary: str
    from_csv: bool  # rows come from the train CSV (subject to sample_train as rows)
    pieces: Callable[[TaskSources], list[Pieces]]


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="sid_next_item",
            summary="history SIDs -> next SID",
            from_csv=True,
            pieces=lambda s: sid_next_item_pieces(s.rows),
        ),
        TaskSpec(
            name="sid_item_alignment",
            summary="SID <-> title",
            from_csv=False,
            pieces=lambda s: sid_item_alignment_pieces(s.index, s.items, leak=s.leak),
        ),
        TaskSpec(
            name="fusion_seq_rec",
            summary="history SIDs -> next title",
            from_csv=True,
            pieces=lambda s: fusion_seq_rec_pieces(s.rows, s.index, s.items),
        ),
        TaskSpec(
            name="title_next_item",
            summary="history titles -> next title (SFTData)",
            from_csv=True,
            pieces=lambda s: title_next_item_pieces(s.rows, category=s.category, seed=s.seed),
        ),
        TaskSpec(
            name="title_history_to_sid",
            summary="history titles -> next SID",
            from_csv=True,
            pieces=lambda s: title_history_to_sid_pieces(s.rows, s.index, category=s.category),
        ),
    )
}


def sample_like_pandas(rows: Sequence[T], k: int, seed: int) -> list[T]:
    """``DataFrame.sample(k, random_state=seed)`` row selection: RandomState(seed).permutation(n)[:k].

    ``k <= 0`` or ``k >= len(rows)`` keeps all rows in order.
    """
    if k <= 0 or k >= len(rows):
        return list(rows)
    order = np.random.RandomState(seed).permutation(len(rows))[:k]
    return [rows[int(i)] for i in order]


def _path(value: str | None, key: str) -> Path:
    if not value:
        raise ConfigError(f"data.{key} is not set (set data.data_dir or the file path)")
    return Path(value)


def enabled_tasks(tasks_cfg: Any) -> list[str]:
    """Names of the enabled tasks in concatenation order."""
    return [name for name in TASKS if getattr(tasks_cfg, name)]


def build_train_examples(d: "DataConfig", t: "TasksConfig", tokenizer: Any, *, seed: int) -> list[Example]:
    """All enabled tasks' examples, concatenated in upstream order.

    Args:
        d: the ``data`` config section (file paths, sampling, lengths).
        t: the ``tasks`` config section (which tasks).
        tokenizer: an HF tokenizer that already holds the SID tokens (`add_sid_tokens`).
        seed: the run seed (row sampling, task-internal shuffles).

    Raises:
        DataError: bad files, CSV SIDs missing from the catalog, or a tokenizer without SID tokens.
    """
    names = enabled_tasks(t)
    if not names:
        raise ConfigError(
            "tasks: every task is disabled; enable at least one (e.g. tasks.sid_next_item=true)"
        )
    index = read_index(_path(d.sid_index_path, "sid_index_path"))
    sid_token_ids(tokenizer, sid_vocabulary(index), source=str(d.sid_index_path))
    needs_rows = any(TASKS[n].from_csv for n in names)
    needs_items = any(n in ("sid_item_alignment", "fusion_seq_rec") for n in names)
    rows = sample_like_pandas(training_rows(d)[0], d.sample_train, seed) if needs_rows else []
    items = read_items(_path(d.item_meta_path, "item_meta_path")) if needs_items else {}
    if needs_items:
        needed = [str(r.item_id) for r in rows] if "fusion_seq_rec" in names else []
        check_items_cover(d.item_meta_path, index, items, needed=needed, task="fusion_seq_rec")
    sources = TaskSources(
        rows=rows,
        index=index,
        items=items,
        category=d.category,
        seed=seed,
        leak=t.sid_item_alignment_upstream_leak,
    )
    encoder = PieceEncoder(tokenizer)
    out: list[Example] = []
    for name in names:
        spec = TASKS[name]
        pieces = spec.pieces(sources)
        if not spec.from_csv and d.sample_train > 0 and d.sample_train < len(pieces):
            pieces = random.Random(seed).sample(pieces, d.sample_train)
        out.extend(encoder.examples(pieces, task=name, max_len=d.max_len))
    return out


def training_rows(d: "DataConfig") -> tuple[list[InteractionRow], list[InteractionRow]]:
    """(training examples of the CSV tasks, rows the popularity baseline counts): ``data.train_file``
    expanded by ``data.train_prefixes`` / ``data.train_test_histories`` (`sidcore.data.prefixes`)."""
    train = _read_split(d, "train_file")
    test = _read_split(d, "test_file") if d.train_test_histories else None
    return expand_training_rows(train, test, prefixes=d.train_prefixes), popularity_rows(train, test)


def _split_rows(d: "DataConfig", split: str, sample: int, seed: int) -> list[InteractionRow]:
    rows = _read_split(d, {"valid": "eval_file", "test": "test_file"}[split])
    return sample_like_pandas(rows, sample, seed)


def _read_split(d: "DataConfig", key: str) -> list[InteractionRow]:
    """The CSV of ``data.<key>``: SIDs in the catalog, item ids matching index.json (when set)."""
    valid = catalog_sids(read_info(_path(d.info_file, "info_file"))) if d.info_file else None
    path = _path(getattr(d, key), key)
    rows = read_csv(path, valid_sids=valid, skip_empty_history=d.skip_empty_history)
    if d.sid_index_path:
        check_row_ids(path, rows, read_index(d.sid_index_path))
    return rows


def build_validation_examples(d: "DataConfig", tokenizer: Any, *, seed: int) -> list[Example]:
    """Validation-loss set: task 1 on ``data.eval_file`` (``data.sample_eval`` rows), upstream's eval_loss."""
    rows = _split_rows(d, "valid", d.sample_eval, seed)
    return PieceEncoder(tokenizer).examples(
        sid_next_item_pieces(rows), task="sid_next_item", max_len=d.max_len
    )


def eval_prompts(rows: Sequence[InteractionRow], tokenizer: Any, *, max_len: int = 2560) -> list[EvalPrompt]:
    """Decoding prompts (`EvalSidDataset`) for ``rows``, left-truncated to ``max_len``."""
    encoder = PieceEncoder(tokenizer)
    pieces = eval_pieces(rows)
    encoder.warm(t for p in pieces for t in (p.instruction, p.body))
    return [
        encoder.eval_prompt(
            p, input_text=prompts.eval_input(r.history_item_sid), target_sid=r.item_sid, max_len=max_len,
            target_item=str(r.item_id),
        )
        for p, r in zip(pieces, rows)
    ]


def build_eval_prompts(d: "DataConfig", tokenizer: Any, *, split: str, seed: int) -> list[EvalPrompt]:
    """Decoding prompts of ``split`` (test or valid) with ``data.eval_max_len``."""
    sample = d.sample_test if split == "test" else d.sample_eval
    rows = _split_rows(d, split, sample, seed)
    return eval_prompts(rows, tokenizer, max_len=d.eval_max_len)


__all__ = [
    "TASKS",
    "EvalPrompt",
    "Example",
    "Pieces",
    "TaskSpec",
    "build_eval_prompts",
    "build_train_examples",
    "build_validation_examples",
    "enabled_tasks",
    "eval_prompts",
    "sample_like_pandas",
    "training_rows",
]
