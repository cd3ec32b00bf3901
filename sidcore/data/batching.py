"""Fixed-shape numpy batches from tokenized examples: padding, sequence packing, label positions, data order.

Batch layout (every array ``[B, L]`` int32):

- ``input_ids``: token ids, ``pad_id`` on padding.
- ``positions``: RoPE position of each token, **per sample**: 0 on the sample's first real token
  whatever the padding side (0 on padding too). Packed rows restart at 0 for every segment.
- ``segment_ids``: 1 on real tokens and 0 on padding; packed rows number their segments 1..n.
  Attention must be causal *and* within equal, non-zero segment ids.
- ``labels``: **already shifted** next-token targets: ``labels[b, t]`` is the id the model must
  predict from position t (i.e. the example's label of token t+1), -100 where there is nothing to
  predict (prompt tokens, the last token of each sample/segment, padding). The loss is therefore
  ``CE(logits[b, t], labels[b, t])`` with no further shifting.

Left and right padding give the same (positions, segment, label) content on real tokens, so the
model output is independent of the padding side. Nothing here imports jax.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sidcore.errors import ConfigError

IGNORE = -100
POLICIES = ("fixed", "buckets", "max")


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= `n` (0 stays 0)."""
    return -(-n // multiple) * multiple


def padded_length(
    longest: int,
    *,
    policy: str,
    max_len: int,
    pad_to_multiple_of: int = 8,
    buckets: Sequence[int] = (),
) -> int:
    """Row length for a batch whose longest example has ``longest`` tokens.

    ``fixed``: ``max_len``; ``buckets``: the smallest bucket >= longest; ``max``: ``longest``; each
    rounded up to ``pad_to_multiple_of``. Use the *global* longest (over all processes' rows) so every
    process builds the same shape.
    """
    if policy == "fixed":
        length = max_len
    elif policy == "buckets":
        fitting = sorted(b for b in buckets if b >= longest)
        if not fitting:
            raise ConfigError(
                f"data.pad_buckets: no bucket >= {longest} tokens (buckets {list(buckets)}); add {max_len}"
            )
        length = fitting[0]
    elif policy == "max":
        length = longest
    else:
        raise ConfigError(f"data.pad_policy: unknown batch policy {policy!r} (expected one of {POLICIES})")
    length = round_up(max(length, 1), pad_to_multiple_of)
    if longest > length:
        raise ConfigError(f"data: an example has {longest} tokens, more than the padded length {length}")
    return length


def _empty(rows: int, length: int, pad_id: int) -> dict[str, np.ndarray]:
    return {
        "input_ids": np.full((rows, length), pad_id, dtype=np.int32),  # [B, L]
        "positions": np.zeros((rows, length), dtype=np.int32),  # [B, L]
        "segment_ids": np.zeros((rows, length), dtype=np.int32),  # [B, L]
        "labels": np.full((rows, length), IGNORE, dtype=np.int32),  # [B, L]
    }


def _place(batch: dict[str, np.ndarray], row: int, start: int, example: Any, segment: int) -> None:
    ids = np.asarray(example.input_ids, dtype=np.int32)
    labels = np.asarray(example.labels, dtype=np.int32)
    if ids.shape != labels.shape:
        raise ValueError(f"example has {ids.size} input ids but {labels.size} labels")
    n = ids.size
    stop = start + n
    batch["input_ids"][row, start:stop] = ids
    batch["positions"][row, start:stop] = np.arange(n, dtype=np.int32)
    batch["segment_ids"][row, start:stop] = segment
    batch["labels"][row, start : stop - 1] = labels[1:]  # shift: position t predicts token t+1
    batch["labels"][row, stop - 1] = IGNORE


def collate(
    examples: Sequence[Any],
    *,
    policy: str = "buckets",
    pad_side: str = "right",
    pad_to_multiple_of: int = 8,
    max_len: int = 512,
    buckets: Sequence[int] = (64, 128, 256, 512),
    pad_id: int,
    length: int | None = None,
) -> dict[str, np.ndarray]:
    """Pad examples (objects with ``input_ids`` and unshifted ``labels``) into one ``[B, L]`` batch.

    Args:
        examples: the rows of this batch (this process's rows in multi-process runs).
        policy: ``fixed`` | ``buckets`` | ``max``, see `padded_length`.
        pad_side: ``left`` or ``right``.
        pad_to_multiple_of: round L up to a multiple of this.
        max_len: L for ``fixed``.
        buckets: candidate lengths for ``buckets``.
        pad_id: id written on padding.
        length: force L (e.g. computed from the global batch with `padded_length`).

    Returns:
        ``input_ids``, ``positions``, ``segment_ids``, ``labels`` (shifted), all ``[B, L]`` int32.
    """
    if pad_side not in ("left", "right"):
        raise ConfigError(f"data.padding_side must be 'left' or 'right', got {pad_side!r}")
    lengths = [len(e.input_ids) for e in examples]
    if any(n == 0 for n in lengths):
        raise ValueError("cannot collate an empty example")
    longest = max(lengths, default=1)
    if length is None:
        length = padded_length(
            longest, policy=policy, max_len=max_len, pad_to_multiple_of=pad_to_multiple_of, buckets=buckets
        )
    elif longest > length:
        raise ConfigError(f"data: an example has {longest} tokens, more than the batch length {length}")
    batch = _empty(len(examples), length, pad_id)
    for row, (ex, n) in enumerate(zip(examples, lengths)):
        _place(batch, row, length - n if pad_side == "left" else 0, ex, 1)
    return batch


def pack(
    examples: Sequence[Any],
    *,
    seq_len: int,
    pad_id: int,
    num_rows: int | None = None,
) -> dict[str, np.ndarray]:
    """Greedy first-fit packing of examples into rows of ``seq_len`` tokens.

    Examples are taken in order; each goes into the first row with room for it (a new row if none).
    Segments are numbered 1..n within a row, positions restart at 0 per segment, and no label crosses a
    segment boundary (a segment's last position is -100).

    Args:
        num_rows: pad the result with empty rows to exactly this many (error if more are needed).

    Returns:
        The `collate` arrays, ``[R, seq_len]``.
    """
    room: list[int] = []
    placement: list[tuple[int, int, int]] = []  # (row, start, segment) per example
    segments: list[int] = []
    for ex in examples:
        n = len(ex.input_ids)
        if n == 0 or n > seq_len:
            raise ConfigError(f"data: cannot pack an example of {n} tokens into rows of {seq_len}")
        row = next((r for r, free in enumerate(room) if free >= n), None)
        if row is None:
            room.append(seq_len)
            segments.append(0)
            row = len(room) - 1
        segments[row] += 1
        placement.append((row, seq_len - room[row], segments[row]))
        room[row] -= n
    rows = len(room)
    if num_rows is not None:
        if rows > num_rows:
            raise ConfigError(f"data: packing needs {rows} rows of {seq_len} tokens, only {num_rows} allowed")
        rows = num_rows
    batch = _empty(rows, seq_len, pad_id)
    for ex, (row, start, seg) in zip(examples, placement):
        _place(batch, row, start, ex, seg)
    return batch


class DataOrder:
    """Seeded epoch-wise shuffling of example indices with a resumable cursor.

    Epoch ``e`` visits ``permutation(e)`` (numpy PCG64 seeded with ``(seed, e)``; identity when
    ``shuffle=False``). Micro-batches are consecutive slices of ``batch_size`` global indices; a batch
    that reaches the end of an epoch continues into the next one, so no example is ever dropped and
    every epoch visits each example exactly once. The whole state is ``(epoch, position)`` — the
    cursor of the *next* index — and `from_state` resumes exactly. Every process builds the same order
    and takes its rows with `process_slice`.
    """

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        state: tuple[int, int] = (0, 0),
    ):
        if num_examples <= 0:
            raise ConfigError("data: no training examples")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        epoch, position = (int(x) for x in state)
        if epoch < 0 or not 0 <= position < num_examples:
            raise ValueError(f"invalid data-order state {state!r} for {num_examples} examples")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self._epoch = epoch
        self._position = position
        self._perm_epoch = -1
        self._perm = np.empty((0,), dtype=np.int64)

    @classmethod
    def from_state(
        cls, num_examples: int, batch_size: int, *, seed: int, shuffle: bool = True, state: tuple[int, int]
    ) -> DataOrder:
        return cls(num_examples, batch_size, seed=seed, shuffle=shuffle, state=state)

    @property
    def state(self) -> tuple[int, int]:
        """``(epoch, position)``: plain ints, safe to store in checkpoint metadata."""
        return (self._epoch, self._position)

    @property
    def epochs_done(self) -> float:
        """Fractional epochs consumed so far."""
        return self._epoch + self._position / self.num_examples

    def permutation(self, epoch: int) -> np.ndarray:
        """The visiting order of ``epoch`` (``[N]`` int64)."""
        if epoch != self._perm_epoch:
            if self.shuffle:
                rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, epoch])))
                self._perm = rng.permutation(self.num_examples)
            else:
                self._perm = np.arange(self.num_examples)
            self._perm_epoch = epoch
        return self._perm

    def next_batch(self) -> np.ndarray:
        """The next ``batch_size`` global example indices (``[batch_size]`` int64); advances the cursor."""
        parts = []
        need = self.batch_size
        while need:
            perm = self.permutation(self._epoch)
            take = perm[self._position : self._position + need]
            parts.append(take)
            need -= take.size
            self._position += take.size
            if self._position == self.num_examples:
                self._epoch, self._position = self._epoch + 1, 0
        return np.concatenate(parts)

    def __iter__(self) -> DataOrder:
        return self

    def __next__(self) -> np.ndarray:
        return self.next_batch()


def process_slice(global_rows: Sequence[Any] | np.ndarray, process_index: int, process_count: int) -> Any:
    """This process's contiguous share of a global micro-batch (the count must divide the batch)."""
    total = len(global_rows)
    if process_count <= 0 or not 0 <= process_index < process_count:
        raise ValueError(f"bad process index {process_index} of {process_count}")
    if total % process_count:
        raise ConfigError(f"global micro-batch of {total} rows does not split over {process_count} processes")
    local = total // process_count
    return global_rows[process_index * local : (process_index + 1) * local]
