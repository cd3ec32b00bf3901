"""Prefix expansion (`sidcore.data.prefixes`) and the bundled full splits: the rows it makes, and
that training on test histories never sees a test target (checked on the real Industrial split)."""

from __future__ import annotations

import lzma
import subprocess
import sys

import pytest

from sidcore.data.minionerec import InteractionRow, bundled_full_dir, read_csv, split_paths
from sidcore.data.prefixes import expand_training_rows, first_rows, popularity_rows, prefix_rows
from sidcore.eval.metrics_layout import popularity_ranking

CAT = "Industrial_and_Scientific"


def row(user: str, hist: str, target: str, line: int = 2) -> InteractionRow:
    """A row whose items are single letters: "abc" -> SIDs <a_1><b_1><c_1> etc."""
    sid = lambda ch: f"<a_{ord(ch)}><b_1><c_1>"  # noqa: E731
    return InteractionRow(user_id=user, history_item_title=tuple(f"t{c}" for c in hist), item_title=f"t{target}",
                          history_item_id=tuple(ord(c) for c in hist), item_id=ord(target),
                          history_item_sid=tuple(sid(c) for c in hist), item_sid=sid(target), line=line)


def leaks(train, test) -> list[str]:
    """Messages for training examples that see a test user's test-period items.

    An example of test user u leaks when it holds one of u's test targets (as history item or
    target) and is not a window of the items u had before the first test target (the first test
    row's history: an item bought before the test period may be bought again in it)."""
    before: dict[str, tuple[str, ...]] = {}  # each user's first test row in file order (written apart
    targets: dict[str, set[str]] = {}        # from the module under test, so the check is independent)
    for r in test:
        before.setdefault(r.user_id, r.history_item_sid)
        targets.setdefault(r.user_id, set()).add(r.item_sid)
    out = []
    for r in train:
        seq = (*r.history_item_sid, r.item_sid)
        if r.user_id not in targets or not targets[r.user_id].intersection(seq):
            continue
        hist = before[r.user_id]
        if not any(hist[i:i + len(seq)] == seq for i in range(len(hist) - len(seq) + 1)):
            out.append(f"user {r.user_id}: {''.join(seq)} holds a test target")
    return out


def letters(r: InteractionRow) -> str:
    return "".join(chr(i) for i in r.history_item_id) + ">" + chr(r.item_id)


def test_prefix_rows_are_every_next_item_of_the_history():
    out = prefix_rows(row("u", "abc", "d"))
    assert [letters(r) for r in out] == ["a>b", "ab>c", "abc>d"]
    assert [letters(r) for r in prefix_rows(row("u", "abc", "d"), keep_target=False)] == ["a>b", "ab>c"]
    assert out[1].item_title == "tc" and out[1].history_item_title == ("ta", "tb")  # all columns sliced
    assert prefix_rows(row("u", "a", "b"), keep_target=False) == []


def test_test_histories_use_only_each_users_first_test_row_without_its_target():
    valid = [row("u", "ab", "c")]
    test = [row("u", "abc", "d"), row("u", "bcd", "e"), row("v", "xy", "z")]
    out = expand_training_rows(valid, test, prefixes=True)
    assert [letters(r) for r in out] == ["a>b", "ab>c", "x>y"]  # "ab>c" once (deduplicated); no d, e, z
    assert first_rows(test) == [test[0], test[2]]
    assert leaks(out, test) == []
    assert leaks([row("u", "bc", "d")], test)  # a test target as training target: flagged
    assert leaks([row("u", "cd", "e")], test)  # a test target inside a history: flagged
    # the baseline counts what was trained on: no test target among its counted items
    counted = {s for r in popularity_rows(valid, test) for s in (*r.history_item_sid, r.item_sid)}
    targets = {r.item_sid for r in test}
    assert not counted & targets


def test_bundled_full_splits_are_the_real_ones():
    p = split_paths(bundled_full_dir(), CAT)
    assert p["valid"].suffix == ".xz" and p["test"].suffix == ".xz"
    valid, test = read_csv(p["valid"]), read_csv(p["test"])
    assert (len(valid), len(test)) == (4532, 4533)  # MiniOneRec's Industrial valid/test row counts
    text = lzma.open(p["test"], "rt", encoding="utf-8").read()
    assert text.count("\n") >= 4533 and text.startswith("user_id,history_item_title")


def test_training_on_test_histories_leaks_no_test_target_on_the_real_split():
    p = split_paths(bundled_full_dir(), CAT)
    valid, test = read_csv(p["valid"]), read_csv(p["test"])
    with_test = expand_training_rows(valid, test, prefixes=True)
    without = {(r.user_id, r.history_item_sid, r.item_sid) for r in expand_training_rows(valid, None, prefixes=True)}
    from_test = [r for r in with_test if (r.user_id, r.history_item_sid, r.item_sid) not in without]
    assert len(from_test) > 4000 and leaks(from_test, test) == []
    test_examples = {(r.user_id, r.history_item_sid, r.item_sid) for r in test}
    assert not test_examples & {(r.user_id, r.history_item_sid, r.item_sid) for r in with_test}
    # every prefix of every test history (the naive expansion) does leak, so the check can fail
    naive = [x for r in test for x in prefix_rows(r, keep_target=False)]
    assert len(leaks(naive, test)) > 1000
    # the popularity baseline of the same data: counts from training rows + pre-test histories only
    ranked = popularity_ranking(popularity_rows(valid, test), 50)
    assert len(ranked) == 50


def _run_sid(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sidcore.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("override, message", [
    ("data.test_file=sidcore/assets/minionerec/valid/Industrial_and_Scientific_5_2016-10-2018-11.csv",
     "data.train_file is the test split"),
    ("eval.split=valid", "data.train_test_histories"),
])
def test_config_refuses_training_that_would_see_test_targets(override, message):
    extra = ["data.train_test_histories=true"] if "split" in override else []
    res = _run_sid("config", "show", "--config", "configs/default.yaml", "data.data_dir=bundled", override, *extra)
    assert res.returncode != 0 and message in res.stderr and "Traceback" not in res.stderr
