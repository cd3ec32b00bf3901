"""Config checks that involve several keys (run after structuring; each a one-line `ConfigError`)."""

from __future__ import annotations

import os

from sidcore.config import schema
from sidcore.config.values import check_values
from sidcore.errors import ConfigError


def check_cross_fields(cfg: schema.RunConfig, source: str) -> None:
    """Checks that involve several keys (each a one-line `ConfigError` naming the keys)."""
    e = cfg.eval
    bad = [k for k in e.topk if not isinstance(k, int) or k <= 0]
    if bad or not e.topk:
        raise ConfigError(f"{source}: eval.topk: expected positive integers, got {list(e.topk)}")
    over = [k for k in e.topk if k > e.num_beams]
    if over:
        raise ConfigError(f"{source}: eval.topk {over} exceed eval.num_beams={e.num_beams} (a K > beams has no "
                          "predictions to score); raise eval.num_beams or drop those K")
    if not e.prefill_buckets or any(not isinstance(b, int) or b <= 0 for b in e.prefill_buckets):
        raise ConfigError(f"{source}: eval.prefill_buckets: expected positive integers, got {list(e.prefill_buckets)}")
    if e.use_best_checkpoint and cfg.run_mode == "train_eval" and (not cfg.train.save_best or cfg.train.eval_steps < 0):
        raise ConfigError(f"{source}: eval.use_best_checkpoint needs a best checkpoint, but train.save_best="
                          f"{str(cfg.train.save_best).lower()} and train.eval_steps={cfg.train.eval_steps} "
                          "(set train.eval_steps >= 0 and train.save_best=true)")
    check_values(cfg, source)


def check_data_sources(cfg: schema.RunConfig, source: str) -> None:
    """Refuse training data that would leak the test targets (run after the data paths are filled)."""
    d = cfg.data
    if d.train_test_histories and cfg.eval.split != "test":
        raise ConfigError(f"{source}: data.train_test_histories trains on items before each test target, which "
                          f"may come after the valid targets; it needs eval.split=test (got {cfg.eval.split!r})")
    if cfg.run_mode == "eval" or not (d.train_file and d.test_file):
        return
    from sidcore.data.consistency import same_rows  # standard library only

    if not (os.path.isfile(d.train_file) and os.path.isfile(d.test_file)):
        return
    if same_rows(d.train_file, d.test_file):
        what = f"is the test split ({d.train_file})" if os.path.abspath(d.train_file) == os.path.abspath(
            d.test_file) else f"({d.train_file}) holds the test split's rows ({d.test_file}: a copy or a link)"
        raise ConfigError(f"{source}: data.train_file {what}: training on it leaks "
                          "the test targets; train on valid and add data.train_test_histories=true for the "
                          "test users' earlier items")
