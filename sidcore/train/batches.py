"""Host-side batch assembly for the train step: micro-batch collation, stacking, label gathering.

The order of examples comes from `sidcore.data.batching.DataOrder` (a pure function of the seed and
a resumable ``(epoch, position)`` cursor); this module turns one optimizer step's examples into the
``[A, B, ...]`` arrays of `sidcore.train.step`, with the next-token labels gathered per row.
"""

from __future__ import annotations

import math

from typing import Any, Sequence

import numpy as np

from sidcore.data import batching

IGNORE = -100


def _round_up_nonzero(x: int, m: int) -> int:
    """`round_up` but at least one multiple (a batch with no labels still gets width `m`)."""
    return max(m, batching.round_up(x, m))


def label_arrays(labels: np.ndarray, multiple: int = 8, width: int | None = None) -> dict[str, np.ndarray]:
    """Gather the positions of shifted labels.

    Args:
        labels: ``[B, L]`` next-token labels (``labels[b, t]`` is predicted from position t), -100 = none.
        multiple: round the per-row label budget N up to this multiple (fewer compiled shapes).
        width: force N (must be >= the largest row count).

    Returns:
        ``label_pos, label_ids [B, N]`` int32 and ``label_w [B, N]`` float32.
    """
    B = labels.shape[0]
    mask = labels != IGNORE
    counts = mask.sum(axis=1)
    n = _round_up_nonzero(int(counts.max(initial=0)), multiple) if width is None else width
    pos = np.zeros((B, n), np.int32)
    ids = np.zeros((B, n), np.int32)
    w = np.zeros((B, n), np.float32)
    for b in range(B):
        idx = np.nonzero(mask[b])[0]
        pos[b, : len(idx)] = idx
        ids[b, : len(idx)] = labels[b, idx]
        w[b, : len(idx)] = 1.0
    return {"label_pos": pos, "label_ids": ids, "label_w": w}


def pad_to(arr: np.ndarray, length: int, value: int, side: str = "right") -> np.ndarray:
    extra = length - arr.shape[1]
    if extra <= 0:
        return arr
    pad = ((0, 0), (0, extra)) if side == "right" else ((0, 0), (extra, 0))
    return np.pad(arr, pad, constant_values=value)


def step_batch(
    micro_batches: Sequence[dict[str, np.ndarray]], *, pad_id: int, label_multiple: int = 8
) -> dict[str, np.ndarray]:
    """Stack A collated micro-batches into ``[A, B, ...]`` arrays with common L and label width N."""
    L = max(m["input_ids"].shape[1] for m in micro_batches)
    stacked: dict[str, list[np.ndarray]] = {k: [] for k in
                                            ("input_ids", "positions", "segment_ids", "label_pos", "label_ids", "label_w")}
    labels = [pad_to(m["labels"], L, IGNORE) for m in micro_batches]
    n = max(_round_up_nonzero(int((lab != IGNORE).sum(axis=1).max(initial=0)), label_multiple) for lab in labels)
    for m, lab in zip(micro_batches, labels):
        stacked["input_ids"].append(pad_to(m["input_ids"], L, pad_id))
        stacked["positions"].append(pad_to(m["positions"], L, 0))
        stacked["segment_ids"].append(pad_to(m["segment_ids"], L, 0))
        for k, v in label_arrays(lab, label_multiple, width=n).items():
            stacked[k].append(v)
    return {k: np.stack(v) for k, v in stacked.items()}


def collate_step(
    examples: Sequence[Any], *, micro_rows: int, n_micro: int, data_cfg: Any, pad_id: int, row_multiple: int = 1
) -> dict[str, np.ndarray]:
    """Collate one optimizer step's examples (``micro_rows * n_micro`` of them) into ``[A, B, ...]``.

    With ``pad_policy=pack`` the examples are first packed into rows of ``max_len``; the R packed rows
    become ``A' = ceil(R / micro_rows)`` micro-batches of ``B' = row_multiple * 2**k`` rows (the
    smallest such B' that holds them), so padding rows stay few while the number of distinct
    compiled shapes stays logarithmic. With ``data.pack_rows_multiple`` m > 0, B' is instead the
    smallest multiple of lcm(m, row_multiple) that holds them (less padding, more shapes).
    ``row_multiple`` is the number of data replicas.
    """
    if data_cfg.pad_policy == "pack":
        packed = batching.pack(list(examples), seq_len=data_cfg.max_len, pad_id=pad_id)
        rows = packed["input_ids"].shape[0]
        a = max(1, -(-rows // micro_rows))
        multiple = getattr(data_cfg, "pack_rows_multiple", 0)
        if multiple:  # fewer padding rows, a few more compiled shapes
            unit = row_multiple * multiple // math.gcd(row_multiple, multiple)
            per = -(-(-(-rows // a)) // unit) * unit
        else:
            per = row_multiple
            while per * a < rows:
                per *= 2
        total = per * a
        if total > rows:
            packed = {k: np.concatenate([v, np.full((total - rows, v.shape[1]), IGNORE if k == "labels" else
                                                    (pad_id if k == "input_ids" else 0), v.dtype)])
                      for k, v in packed.items()}
        micro = [{k: v[i * per : (i + 1) * per] for k, v in packed.items()} for i in range(a)]
        return step_batch(micro, pad_id=pad_id)
    micro = [
        batching.collate(
            list(examples[i * micro_rows : (i + 1) * micro_rows]),
            policy=data_cfg.pad_policy,
            pad_side=data_cfg.padding_side,
            pad_to_multiple_of=data_cfg.pad_to_multiple_of,
            max_len=data_cfg.max_len,
            buckets=data_cfg.pad_buckets,
            pad_id=pad_id,
        )
        for i in range(n_micro)
    ]
    return step_batch(micro, pad_id=pad_id)
