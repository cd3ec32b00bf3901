"""The training loop's selection rules (upstream's): the first evaluation sets the best model, an
evaluation that is not strictly better counts against patience, and training stops once more than
``early_stop`` evaluations in a row did not improve; without a selection split the last epoch is kept."""

from __future__ import annotations

import numpy as np

from sidcore.baselines.config import BaselineConfig
from sidcore.baselines.data import Sequences
from sidcore.baselines.train import train_baseline

ITEMS, L = 12, 4


def _data(n: int, seed: int) -> Sequences:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, L + 1, n).astype(np.int32)
    seq = np.full((n, L), ITEMS, np.int32)
    for i, k in enumerate(lengths):
        seq[i, :k] = rng.integers(0, ITEMS, k)
    return Sequences(seq=seq, lengths=lengths, targets=rng.integers(0, ITEMS, n).astype(np.int32))


def test_early_stopping_counts_evaluations_without_improvement():
    # lr so small that no weight moves in float32: every evaluation ties the first one
    cfg = BaselineConfig(model="gru4rec", hidden_factor=4, seq_len=L, lr=1e-12, l2_decay=0.0, batch_size=8, epochs=50,
                         early_stop=2, seed=0)
    records = []
    _, info = train_baseline(cfg, train=_data(20, 0), select=_data(10, 1), test=_data(10, 2), item_num=ITEMS,
                             on_record=records.append)
    assert info["best_epoch"] == 1 and info["epochs_run"] == cfg.early_stop + 2
    assert [r["epoch"] for r in records] == [1, 2, 3, 4] and all("eval/ndcg@20" in r for r in records)
    assert info["steps"] == 4 * 3  # 20 rows in batches of 8: 8, 8, 4


def test_without_selection_split_the_last_epoch_is_kept():
    cfg = BaselineConfig(model="caser", hidden_factor=4, seq_len=L, batch_size=8, epochs=3, seed=0, loss_type="ce")
    _, info = train_baseline(cfg, train=_data(20, 0), select=None, test=_data(10, 2), item_num=ITEMS)
    assert info["best_epoch"] == 3 and info["epochs_run"] == 3 and info["select"] is None
    assert set(info["test"][0]) >= {"hr@1", "ndcg@20", "hr@50"}
