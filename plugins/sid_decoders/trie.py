"""The ``trie`` decoder: beam search constrained to the catalog, any SID depth and branching.

Semantics are upstream MiniOneRec's HF ``generate`` with its trie logits processor (reference-spec
§6.1) and length penalty 0: the generated path is ``SID_1 .. SID_D -> suffix -> EOS`` and an item's
score is the sum of its ``D + len(suffix) + 1`` full-vocabulary log-probs. Implementation follows
the reference JAX port (§6.4) generalised to any depth: one prefill per prompt, ``K`` beams, one
CSR-table gather and one global ``top_k`` per level, all inside ``jit``.
"""

from __future__ import annotations

import attrs
import jax

from sidcore.api import check_vocab, level_beam_search, trie_policy
from sidcore.api import SidTrie
from sidcore.api import ConfigError
from sidcore.api import DecodeModel, SidCatalog
from sid_decoders.config import TrieConfig

__all__ = ["TrieDecoder", "build"]


@attrs.frozen(kw_only=True, eq=False)
class TrieDecoder:
    """Catalog-constrained beam search (`sidcore.interfaces.Decoder`).

    Attributes:
        trie: the catalog's prefix index (built once, host side).
    """

    trie: SidTrie
    fused_scoring: bool = True

    @property
    def emits_sids(self) -> bool:
        """Outputs start with the D level tokens of a catalog SID (the kernel joins them directly).
        False for a mixed-depth catalog: outputs are then decoded as text up to EOS, like upstream."""
        return self.trie.uniform_depth

    def max_new_tokens(self) -> int:
        return self.trie.path_length

    def decode(
        self, model: DecodeModel, input_ids: jax.Array, lengths: jax.Array, *, num_beams: int
    ) -> tuple[jax.Array, jax.Array]:
        """Return the ``K`` best catalog paths per prompt: ``(tokens [B, K, T], scores [B, K])``.

        Raises:
            ConfigError: ``num_beams`` exceeds the catalog size, or catalog ids exceed the vocabulary.
        """
        return self._search(model, input_ids, lengths, num_beams=num_beams, token_logps=False)

    def decode_token_logps(
        self, model: DecodeModel, input_ids: jax.Array, lengths: jax.Array, *, num_beams: int
    ) -> tuple[jax.Array, jax.Array, jax.Array] | None:
        """`decode` plus each path's per-token full-vocabulary log-probs ``[B, K, T]`` (the terms of
        its score). The RL update reuses them as the policy's log-probs of its own rollout; only
        for a uniform-depth catalog (every path has ``T`` real tokens), else None."""
        if not self.trie.uniform_depth:
            return None
        return self._search(model, input_ids, lengths, num_beams=num_beams, token_logps=True)

    def _search(self, model: DecodeModel, input_ids: jax.Array, lengths: jax.Array, *, num_beams: int,
                token_logps: bool) -> tuple[jax.Array, ...]:
        k = int(num_beams)
        if k < 1 or k > self.trie.num_items:
            raise ConfigError(
                f"decoder 'trie': num_beams={k} but the catalog has {self.trie.num_items} items "
                "(eval.num_beams must be between 1 and the catalog size)"
            )
        check_vocab(self.trie.max_token_id, model.vocab_size, "decoder 'trie': the catalog")
        return level_beam_search(
            model,
            input_ids,
            lengths,
            num_beams=k,
            policies=[trie_policy(level) for level in self.trie.levels],
            cache_len=input_ids.shape[1] + self.max_new_tokens(),
            fused=self.fused_scoring,
            token_logps=token_logps,
        )


def build(cfg: TrieConfig, *, catalog: SidCatalog, eos_id: int) -> TrieDecoder:
    """Factory registered as decoder ``trie``."""
    return TrieDecoder(trie=SidTrie.from_catalog(catalog, eos_id=eos_id), fused_scoring=cfg.fused_scoring)
