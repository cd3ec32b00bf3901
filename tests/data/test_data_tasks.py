"""The five SFT tasks + eval prompt on real Industrial rows, against hand-built expectations.

Expected strings are written here from the reference spec's template strings (not imported from
`sidcore.data.prompts`), each piece is tokenized separately and the ids concatenated.
"""

from __future__ import annotations

import random
from collections import Counter
from types import SimpleNamespace

import attrs
import pytest

from sidcore.config.schema import DataConfig, TasksConfig
from sidcore.data.minionerec import read_csv, read_index, read_info, read_items
from sidcore.data.tasks import (
    build_eval_prompts,
    build_train_examples,
    build_validation_examples,
    eval_prompts,
    sample_like_pandas,
)
from sidcore.errors import DataError

H = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request. \n\n### Instruction:\n"
)
EOS = 151643
ROW = 1  # valid row of user A5382: 4 history items (one repeated)



def _train(cfg, tokenizer):
    return build_train_examples(cfg.data, cfg.tasks, tokenizer, seed=cfg.seed)

def B(inp, out=""):
    return "### User Input: \n" + inp + "\n\n### Response:\n" + out


def expected(tok, instruction, body, target):
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    prompt = enc(instruction) + enc(body)
    answer = enc(target) + [EOS]
    return prompt + answer, [-100] * len(prompt) + answer


def make_cfg(paths, **tasks):
    data = DataConfig(
        train_file=str(paths["valid"]),
        eval_file=str(paths["valid"]),
        test_file=str(paths["test"]),
        info_file=str(paths["info"]),
        sid_index_path=str(paths["index"]),
        item_meta_path=str(paths["items"]),
    )
    flags = {
        k: False
        for k in (
            "sid_next_item",
            "sid_item_alignment",
            "fusion_seq_rec",
            "title_next_item",
            "title_history_to_sid",
        )
    }
    flags.update(tasks)
    return SimpleNamespace(seed=42, data=data, tasks=TasksConfig(**flags), eval=SimpleNamespace(split="test"))


@pytest.fixture(scope="module")
def rows(sample_paths):
    return read_csv(sample_paths["valid"])


def _only(cfg, tok, task):
    examples = _train(cfg, tok)
    assert {e.task for e in examples} == {task}
    return examples


def test_task1_sid_next_item(sid_tokenizer, sample_paths, rows):
    r = rows[ROW]
    ex = _only(make_cfg(sample_paths, sid_next_item=True), sid_tokenizer, "sid_next_item")
    assert len(ex) == 300
    inp = (
        "The user has interacted with items "
        + ", ".join(r.history_item_sid)
        + " in chronological order. Can you predict the next possible item that the user may expect?"
    )
    ids, labels = expected(
        sid_tokenizer,
        H + "Can you predict the next possible item that the user may expect?\n\n",
        B(inp),
        r.item_sid + "\n",
    )
    assert ex[ROW].input_ids == ids and ex[ROW].labels == labels
    # the answer is exactly 3 SID ids + "\n" + EOS
    assert [x for x in labels if x != -100][-2:] == [198, EOS]
    assert sum(x != -100 for x in labels) == 5


def test_task2_alignment_counts_and_rows(sid_tokenizer, sample_paths):
    cfg = make_cfg(sample_paths, sid_item_alignment=True)
    ex = _only(cfg, sid_tokenizer, "sid_item_alignment")
    assert len(ex) == 7316  # 3670 sid2title + 3646 title2sid
    items = read_items(sample_paths["items"])
    index = read_index(sample_paths["index"])
    sid0, title0 = "".join(index["0"]), items["0"].title
    instr = H + "Answer the question about item identification.\n\n"
    ids, labels = expected(
        sid_tokenizer, instr, B('What is the title of item "' + sid0 + '"?'), title0 + "\n"
    )
    assert ex[0].input_ids == ids and ex[0].labels == labels
    ids, labels = expected(sid_tokenizer, instr, B("Which item has the title: " + title0 + "?"), sid0 + "\n")
    assert ex[3670].input_ids == ids and ex[3670].labels == labels
    # upstream leak: the answer also sits (masked) right after "### Response:\n"
    leak_cfg = make_cfg(sample_paths, sid_item_alignment=True)
    leak_cfg.tasks = TasksConfig(
        sid_next_item=False,
        fusion_seq_rec=False,
        sid_item_alignment=True,
        sid_item_alignment_upstream_leak=True,
    )
    leak = _train(leak_cfg, sid_tokenizer)
    ids, labels = expected(
        sid_tokenizer, instr, B("Which item has the title: " + title0 + "?", sid0), sid0 + "\n"
    )
    assert leak[3670].input_ids == ids and leak[3670].labels == labels
    assert sid_tokenizer.decode(leak[3670].input_ids).endswith(f"### Response:\n{sid0}{sid0}\n<|endoftext|>")


def test_task3_fusion(sid_tokenizer, sample_paths, rows):
    r = rows[ROW]
    # precondition for the hand-built target: the target SID belongs to a single item (no collision)
    assert Counter(e.sid for e in read_info(sample_paths["info"]))[r.item_sid] == 1
    title = read_items(sample_paths["items"])[str(r.item_id)].title
    ex = _only(make_cfg(sample_paths, fusion_seq_rec=True), sid_tokenizer, "fusion_seq_rec")
    inp = (
        "The user has sequentially interacted with items "
        + ", ".join(r.history_item_sid)
        + ". Can you recommend the next item for him? Tell me the title of the item"
    )
    ids, labels = expected(
        sid_tokenizer,
        H + "Can you recommend the next item for the user based on their interaction history?\n\n",
        B(inp),
        title + "\n",
    )
    assert ex[ROW].input_ids == ids and ex[ROW].labels == labels


def test_task4_title_next_item_matches_global_random_draws(sid_tokenizer, sample_paths, rows):
    state = random.getstate()
    try:  # upstream: random.seed(seed) in the constructor, then one randint(0, 10) per row
        random.seed(42)
        draws = [random.randint(0, 10) for _ in rows]
    finally:
        random.setstate(state)
    instructs = [
        "Given a list of {c} the user recetenly enjoy, please write a new {c} that the user may bought",
        "Considering the {c} that has recently captured the user's interest, kindly create a "
        "compilation of other {c} that the user might have played prior to this.",
        "Based on the user's current gaming preference, please draft a list of potential {c} they may "
        "have experienced beforehand.",
        "Reflecting on the {c} the user has taken pleasure in recently, we request that you formulate "
        "a list of {c} that may have preceded the user's current enjoyment.",
        "In light of the recent gaming enjoyment expressed by the user, please assemble a list of {c} "
        "that could potentially include past titles the user has engaged with.",
        "Taking into account the {c} that has lately provided enjoyment to the user, please put "
        "together an inventory of {c} the user might have explored previously.",
        "Given the user's newfound enjoyment of a particular {c}, would you kindly generate a roster "
        "of other {c} that might resonate with their past gaming experiences?",
        "In response to the user's recent fondness for a specific {c}, we seek your assistance in "
        "listing possible {c} the user may have delighted in earlier.",
        "With respect to the {c} currently enjoyed by the user, please compile a suggestive list of "
        "{c} they may have played in the past.",
        "Bearing in mind the {c} that the user has recently been enthralled by, please construct a "
        "catalog of other {c} that the user potentially partook in beforehand.",
        "In relation to the user's recent entertainment with a given {c}, it would be appreciated if "
        "you could curate a list of {c} that might form part of the user's previous gaming history.",
    ]
    before = random.getstate()
    ex = _only(make_cfg(sample_paths, title_next_item=True), sid_tokenizer, "title_next_item")
    assert random.getstate() == before  # global RNG untouched
    c = "industrial and scientific items"
    checked = 0
    for i in range(len(rows)):
        if len(ex[i].input_ids) >= 512:
            continue
        r = rows[i]
        inp = (
            "The user has palyed the following "
            + c
            + "s before: "
            + ",\t".join('"' + t + '"' for t in r.history_item_title)
        )
        ids, labels = expected(
            sid_tokenizer, H + instructs[draws[i]].format(c=c) + "\n \n", B(inp), '"' + r.item_title + '"\n'
        )
        assert ex[i].input_ids == ids and ex[i].labels == labels, i
        checked += 1
    assert checked >= 290 and len(set(draws)) == 11 and draws[0] == 10


def test_task5_title_history_to_sid(sid_tokenizer, sample_paths, rows):
    r = rows[ROW]
    ex = _only(make_cfg(sample_paths, title_history_to_sid=True), sid_tokenizer, "title_history_to_sid")
    inp = (
        "The user has interacted with the following industrial and scientific items items in chronological "
        "order: "
        + ", ".join('"' + t + '"' for t in r.history_item_title)
        + ". Can you predict the next item the user may expect?"
    )
    instr = (
        H + "Based on the user's historical interaction with item titles, predict the semantic ID of the "
        "next item they may expect.\n\n"
    )
    ids, labels = expected(sid_tokenizer, instr, B(inp), r.item_sid + "\n")
    assert ex[ROW].input_ids == ids and ex[ROW].labels == labels


def test_eval_prompt(sid_tokenizer, sample_paths):
    test_rows = read_csv(sample_paths["test"])
    cfg = make_cfg(sample_paths, sid_next_item=True)
    prompts = build_eval_prompts(cfg.data, sid_tokenizer, split=cfg.eval.split, seed=cfg.seed)
    assert len(prompts) == 200
    r, p = test_rows[0], prompts[0]
    inp = (
        "Can you predict the next possible item the user may expect, given the following chronological "
        "interaction history: " + ", ".join(r.history_item_sid)
    )
    enc = lambda s: sid_tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    assert p.input_ids == enc(
        H + "Can you predict the next possible item that the user may expect?\n\n"
    ) + enc(B(inp))
    assert p.input_ids[-3:] == [14374, 5949, 510]
    assert p.input_text == inp and p.target_sid == r.item_sid
    short = eval_prompts(test_rows[:1], sid_tokenizer, max_len=10)[0]
    assert short.input_ids == p.input_ids[-10:]


def test_concatenation_order_truncation_and_validation(sid_tokenizer, sample_paths):
    cfg = make_cfg(
        sample_paths,
        sid_next_item=True,
        sid_item_alignment=True,
        fusion_seq_rec=True,
        title_next_item=True,
        title_history_to_sid=True,
    )
    ex = _train(cfg, sid_tokenizer)
    order = [e.task for e in ex]
    assert order == (
        ["sid_next_item"] * 300
        + ["sid_item_alignment"] * 7316
        + ["fusion_seq_rec"] * 300
        + ["title_next_item"] * 300
        + ["title_history_to_sid"] * 300
    )
    assert max(len(e) for e in ex) == 512
    long = next(e for e in ex if len(e) == 512)  # left truncation keeps the answer and its labels
    assert long.input_ids[-1] == EOS and long.labels[-1] == EOS and len(long.labels) == 512
    val = build_validation_examples(cfg.data, sid_tokenizer, seed=cfg.seed)
    assert [e.input_ids for e in val] == [e.input_ids for e in ex[:300]]


def test_sample_train(sid_tokenizer, sample_paths):
    import numpy as np

    cfg = make_cfg(sample_paths, sid_next_item=True, sid_item_alignment=True)
    cfg.data = attrs.evolve(cfg.data, sample_train=7)
    ex = _train(cfg, sid_tokenizer)
    assert Counter(e.task for e in ex) == {"sid_next_item": 7, "sid_item_alignment": 7}
    full = _train(make_cfg(sample_paths, sid_next_item=True), sid_tokenizer)
    picks = np.random.RandomState(42).permutation(300)[:7]
    assert [e.input_ids for e in ex[:7]] == [full[i].input_ids for i in picks]
    assert sample_like_pandas([1, 2, 3], 0, seed=1) == [1, 2, 3]


def test_tokenizer_without_sid_tokens_is_rejected(fresh_tokenizer, sample_paths):
    with pytest.raises(DataError, match="tokenizer lacks SID tokens"):
        _train(make_cfg(sample_paths, sid_next_item=True), fresh_tokenizer())
