"""Example third-party plugin for `sid`: one component of three kinds.

- metric ``mrr`` (mean reciprocal rank): ``metrics: [hr, ndcg, invalid, mrr]`` (or ``{name: mrr, k: 10}``);
- checkpoint store ``npz_dir`` for ``npz://`` URIs (`sid_plugin_example.stores`): ``checkpoint_uri=npz:///data/ckpt``;
- launcher ``nice_local`` (`sid_plugin_example.launchers`): ``sid run --launcher nice_local ...``.

This module imports only ``sidcore`` and ``attrs``; the store and launcher are registered as
``"module:factory"`` strings, imported only when selected.
"""

from __future__ import annotations

from typing import Sequence

import attrs

from sidcore import hookimpl


@attrs.frozen(kw_only=True)
class MrrConfig:
    k: int = attrs.field(default=50, validator=attrs.validators.gt(0), metadata={"help": "Cut-off rank."})


def _norm(text: str) -> str:
    # Same normalisation as MiniOneRec's calc.py for predictions and targets.
    return text.strip("\"\n").strip()


class Mrr:
    def __init__(self, cfg: MrrConfig) -> None:
        self.k = cfg.k

    def __call__(self, predictions: Sequence[Sequence[str]], targets: Sequence[str], *, catalog: object) -> dict:
        total = 0.0
        for preds, target in zip(predictions, targets):
            t = target.strip(" \n\"")
            for rank, p in enumerate(preds[: self.k]):
                if _norm(p) == t:
                    total += 1.0 / (rank + 1)
                    break
        return {f"mrr@{self.k}": total / max(len(targets), 1)}


def build(cfg: MrrConfig) -> Mrr:
    return Mrr(cfg)


@hookimpl
def register_metrics(register):
    register("mrr", build, config=MrrConfig, summary="Mean reciprocal rank of the first hit (example plugin)")


@hookimpl
def register_checkpoint_stores(register):
    from sid_plugin_example.config import NpzDirConfig

    register("npz_dir", "sid_plugin_example.stores:build", config=NpzDirConfig, schemes=("npz",),
             summary="npz:// directories of <name>.npz + <name>.json commit records (example plugin)")


@hookimpl
def register_launchers(register):
    from sid_plugin_example.config import NiceLocalConfig

    register("nice_local", "sid_plugin_example.launchers:build", config=NiceLocalConfig,
             summary="the run in one child process under nice -n N (example plugin)")
