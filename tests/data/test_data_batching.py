"""Batching: padding sides agree, labels are shifted, packing keeps segments apart, data order resumes."""

from __future__ import annotations

import numpy as np
import pytest

from sidcore.data.batching import DataOrder, collate, pack, padded_length, process_slice
from sidcore.data.encoding import Example
from sidcore.errors import ConfigError

PAD = 0


def ex(ids, prompt_len):
    return Example(input_ids=list(ids), labels=[-100] * prompt_len + list(ids[prompt_len:]), task="t")


EXAMPLES = [ex([11, 12, 13, 14, 15], 3), ex([21, 22, 23], 1), ex([31, 32, 33, 34, 35, 36, 37, 38, 39], 6)]


def test_right_padding_hand_checked():
    b = collate(EXAMPLES, policy="max", pad_side="right", pad_to_multiple_of=4, pad_id=PAD)
    assert all(v.dtype == np.int32 and v.shape == (3, 12) for v in b.values())
    assert b["input_ids"][1].tolist() == [21, 22, 23] + [PAD] * 9
    assert b["positions"][1].tolist() == [0, 1, 2] + [0] * 9
    assert b["segment_ids"][1].tolist() == [1, 1, 1] + [0] * 9
    # shifted: position t holds the label of token t+1; last real token and padding are ignored
    assert b["labels"][0].tolist() == [-100, -100, 14, 15, -100] + [-100] * 7
    assert b["labels"][1].tolist() == [22, 23, -100] + [-100] * 9


def test_left_and_right_padding_agree_on_real_tokens():
    kw = dict(policy="buckets", buckets=(8, 16), pad_to_multiple_of=8, pad_id=PAD)
    left = collate(EXAMPLES, pad_side="left", **kw)
    right = collate(EXAMPLES, pad_side="right", **kw)
    assert left["input_ids"].shape == (3, 16)
    for row in range(3):
        lm, rm = left["segment_ids"][row] > 0, right["segment_ids"][row] > 0
        assert lm.sum() == rm.sum() == len(EXAMPLES[row].input_ids)
        assert not lm[: -lm.sum()].any()  # left: real tokens are the suffix
        for key in ("input_ids", "positions", "segment_ids", "labels"):
            assert left[key][row][lm].tolist() == right[key][row][rm].tolist(), key
    assert left["positions"][1].tolist() == [0] * 13 + [0, 1, 2]
    # nothing to predict outside real tokens
    assert (left["labels"][left["segment_ids"] == 0] == -100).all()


def test_policies_and_lengths():
    assert padded_length(5, policy="fixed", max_len=20, pad_to_multiple_of=8) == 24
    assert padded_length(65, policy="buckets", max_len=512, buckets=(64, 128, 512)) == 128
    assert padded_length(9, policy="max", max_len=512, pad_to_multiple_of=8) == 16
    with pytest.raises(ConfigError, match="no bucket >= 600"):
        padded_length(600, policy="buckets", max_len=512, buckets=(64, 512))
    with pytest.raises(ConfigError, match="more than the padded length"):
        padded_length(30, policy="fixed", max_len=20)
    b = collate(EXAMPLES, policy="fixed", max_len=32, pad_id=7, length=40)
    assert b["input_ids"].shape == (3, 40) and b["input_ids"][0, -1] == 7


def test_pack_first_fit_keeps_segments_apart():
    exs = [ex(range(1, 7), 2), ex(range(11, 14), 1), ex(range(21, 25), 1), ex(range(31, 33), 1)]
    b = pack(exs, seq_len=8, pad_id=PAD)
    # first fit: [6] -> row0; [3] -> row1 (row0 has 2 free); [4] -> row1; [2] -> row0
    assert b["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6, 31, 32], [11, 12, 13, 21, 22, 23, 24, 0]]
    assert b["segment_ids"].tolist() == [[1, 1, 1, 1, 1, 1, 2, 2], [1, 1, 1, 2, 2, 2, 2, 0]]
    assert b["positions"].tolist() == [[0, 1, 2, 3, 4, 5, 0, 1], [0, 1, 2, 0, 1, 2, 3, 0]]
    # the last token of a segment never predicts the next segment's first token
    assert b["labels"].tolist() == [
        [-100, 3, 4, 5, 6, -100, 32, -100],
        [12, 13, -100, 22, 23, 24, -100, -100],
    ]
    padded = pack(exs, seq_len=8, pad_id=PAD, num_rows=4)
    assert padded["input_ids"].shape == (4, 8) and (padded["segment_ids"][2:] == 0).all()
    with pytest.raises(ConfigError, match="needs 2 rows"):
        pack(exs, seq_len=8, pad_id=PAD, num_rows=1)
    with pytest.raises(ConfigError, match="cannot pack an example of 9 tokens"):
        pack([EXAMPLES[2]], seq_len=8, pad_id=PAD)


def test_data_order_covers_epochs_and_resumes():
    order = DataOrder(10, 4, seed=3)
    batches = [order.next_batch() for _ in range(5)]  # 20 indices = exactly 2 epochs
    flat = np.concatenate(batches)
    assert sorted(flat[:10].tolist()) == list(range(10)) and sorted(flat[10:].tolist()) == list(range(10))
    assert flat[:10].tolist() != flat[10:].tolist()  # reshuffled per epoch
    assert order.state == (2, 0) and order.epochs_done == 2.0
    # resume from a mid-epoch cursor saved after 3 batches
    ref = DataOrder(10, 4, seed=3)
    for _ in range(3):
        ref.next_batch()
    saved = ref.state
    assert saved == (1, 2) and all(isinstance(x, int) for x in saved)
    expect = [ref.next_batch().tolist() for _ in range(4)]
    resumed = DataOrder.from_state(10, 4, seed=3, state=saved)
    assert [next(resumed).tolist() for _ in range(4)] == expect
    assert DataOrder(10, 4, seed=4).next_batch().tolist() != DataOrder(10, 4, seed=3).next_batch().tolist()
    assert DataOrder(5, 3, seed=0, shuffle=False).next_batch().tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        DataOrder(10, 4, seed=0, state=(0, 10))


def test_process_slice():
    rows = np.arange(8)
    assert process_slice(rows, 1, 4).tolist() == [2, 3]
    assert process_slice(list("abcd"), 0, 2) == ["a", "b"]
    with pytest.raises(ConfigError, match="does not split over 3 processes"):
        process_slice(rows, 0, 3)
