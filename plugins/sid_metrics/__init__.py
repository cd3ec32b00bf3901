"""Built-in metric components: `hr`, `ndcg`, `invalid` (SID level, `calc.py` semantics) and the
item-level variants `hr_item`, `ndcg_item` (SID collisions expanded to items).

Listing these components imports only `attrs`; the scoring code lives in `sid_metrics.ranking`,
built on the pure functions of `sid_metrics.calc` (also used by the kernel and ``sid calc``).
"""

from __future__ import annotations

from sidcore import hookimpl
from sidcore.api import Register
from sid_metrics.config import InvalidConfig, TopKConfig


@hookimpl
def register_metrics(register: Register) -> None:
    register("hr", "sid_metrics.ranking:build_hr", config=TopKConfig,
             summary="HR@K: share of samples whose target SID is among the first K predictions.")
    register("ndcg", "sid_metrics.ranking:build_ndcg", config=TopKConfig,
             summary="NDCG@K with one relevant SID: mean of 1/log2(rank+2) over hits within K.")
    register("invalid", "sid_metrics.ranking:build_invalid", config=InvalidConfig,
             summary="Predictions outside the catalog, counted up to the first hit (calc.py CC).")
    register("hr_item", "sid_metrics.ranking:build_hr_item", config=TopKConfig,
             summary="Item-level HR@K: predicted SIDs expanded to their items; targets are item ids.")
    register("ndcg_item", "sid_metrics.ranking:build_ndcg_item", config=TopKConfig,
             summary="Item-level NDCG@K: predicted SIDs expanded to their items; targets are item ids.")


@hookimpl
def register_commands(cli) -> None:
    from sid_metrics.commands import calc

    cli.add_command(calc)
