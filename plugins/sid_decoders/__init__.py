"""Built-in decoders: ``trie`` (catalog-constrained beam search, any SID depth) and ``pure_beam``
(unconstrained beam search, HF ``generate`` semantics or the reference port's fixed-length variant).

Both are jitted beam searches over a `sidcore.interfaces.DecodeModel`; no extra dependencies.
"""

from __future__ import annotations

from sidcore import hookimpl
from sidcore.api import Register
from sid_decoders.config import PureBeamConfig, TrieConfig


@hookimpl
def register_decoders(register: Register) -> None:
    register(
        "trie",
        "sid_decoders.trie:build",
        config=TrieConfig,
        summary="Beam search constrained to catalog SIDs (then suffix, EOS); prefill once, jitted.",
    )
    register(
        "pure_beam",
        "sid_decoders.pure_beam:build",
        config=PureBeamConfig,
        summary="Unconstrained beam search (HF generate semantics, or fixed SID length).",
    )
