"""SID construction: item text -> embeddings (`sidcore.index.embed`) and the `sid index embed` command body.

Importing this package is cheap; jax, flax and transformers load only when embeddings are computed.
"""

from __future__ import annotations

from sidcore.index.embed import FEATURES, UNKNOWN_ITEM, clean_text, embed_items, embed_texts, item_text

__all__ = ["FEATURES", "UNKNOWN_ITEM", "clean_text", "embed_items", "embed_texts", "item_text"]
