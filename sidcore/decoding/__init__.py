"""Decoding core shared by decoder plugins: the catalog trie, the jitted beam-search cores and the
`DecodeModel` adapter over the NNX LM.

`trie` builds the per-level CSR prefix index (plain numpy; the beam cores move it to the device); `beam` runs fixed-length beam levels
(trie-constrained, free or forced tokens); `open_beam` runs open-ended beam search with HF
``generate`` semantics; `adapter.LMDecodeModel` wraps the model. Importing this package imports jax.
"""

from __future__ import annotations

from sidcore.decoding.adapter import LMDecodeModel
from sidcore.decoding.beam import forced_policy, free_policy, level_beam_search, trie_policy
from sidcore.decoding.open_beam import open_beam_search
from sidcore.decoding.trie import SidTrie, TrieLevel

__all__ = [
    "LMDecodeModel",
    "SidTrie",
    "TrieLevel",
    "forced_policy",
    "free_policy",
    "level_beam_search",
    "open_beam_search",
    "trie_policy",
]
