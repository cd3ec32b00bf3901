"""Options of ``sid baseline`` (attrs only, no jax): upstream ``sasrec.py``'s arguments and defaults."""

from __future__ import annotations

from typing import Any

import attrs
from attrs import field, validators as v

__all__ = ["BaselineConfig", "MODEL_NAMES"]

MODEL_NAMES = ("sasrec", "gru4rec", "caser")
"""``sid baseline`` subcommands = upstream ``--model SASRec|GRU|Caser``."""


def _h(text: str, default: Any, **kw: Any) -> Any:
    return field(default=default, metadata={"help": text}, **kw)


@attrs.frozen(kw_only=True)
class BaselineConfig:
    """Every default is upstream ``sasrec.py``'s argparse default unless its help says otherwise."""

    model: str = _h("sasrec, gru4rec or caser.", "sasrec", validator=v.in_(MODEL_NAMES))
    hidden_factor: int = _h("Embedding / hidden size (--hidden_factor).", 32, validator=v.gt(0))
    num_heads: int = _h("SASRec attention heads (upstream fixes 1).", 1, validator=v.gt(0))
    num_filters: int = _h("Caser filters per horizontal size (--num_filters).", 16, validator=v.gt(0))
    filter_sizes: tuple[int, ...] = _h("Caser horizontal filter heights (--filter_sizes).", (2, 3, 4),
                                       converter=lambda x: tuple(int(i) for i in x))
    dropout_rate: float = _h("Dropout (--dropout_rate; GRU4Rec has none).", 0.3, validator=[v.ge(0), v.lt(1)])
    seq_len: int = _h("History window (upstream seq_size).", 10, validator=v.gt(0))
    loss_type: str = _h("bce (target vs one random negative) or ce (softmax over all items).", "bce",
                        validator=v.in_(("bce", "ce")))
    alpha: float = _h("Weight of the DRO term (0: off).", 0.0, validator=v.ge(0))
    beta: float = _h("DRO robust radius.", 1.0, validator=v.gt(0))
    lr: float = _h("Adam learning rate.", 1e-3, validator=v.gt(0))
    l2_decay: float = _h("Adam weight_decay (L2 added to the gradient, as torch.optim.Adam).", 1e-5, validator=v.ge(0))
    batch_size: int = _h("Rows per step (last batch of an epoch may be smaller).", 1024, validator=v.gt(0))
    epochs: int = _h("Maximum epochs (upstream 500).", 500, validator=v.gt(0))
    early_stop: int = _h("Stop after this many evaluations without a better NDCG@20 (upstream 20).", 20,
                         validator=v.ge(0))
    eval_num: int = _h("Evaluate every this many epochs.", 1, validator=v.gt(0))
    seed: int = _h("Seed of init, shuffling, negatives and dropout (upstream 1).", 1)

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["filter_sizes"] = list(self.filter_sizes)
        return d
