"""The ``pure_beam`` decoder: unconstrained beam search over the full vocabulary.

Default mode reproduces transformers ``generate(num_beams=K, num_return_sequences=K, do_sample=False)``
for a decoder-only model (finished-hypothesis pool, ``length_penalty``, ``early_stopping``,
``max_new_tokens``; `sidcore.decoding.open_beam`). ``fixed_length: true`` reproduces the reference
JAX port's variant (reference-spec §6.5): exactly ``sid_depth`` free tokens (each beam proposes its
top-``K`` tokens, then a global top-``K``), then the suffix and EOS force-scored, so every output has
``sid_depth + len(suffix) + 1`` tokens whether or not it is a catalog item.
"""

from __future__ import annotations

import attrs
import jax

from sidcore.api import check_vocab, forced_policy, free_policy, level_beam_search
from sidcore.api import open_beam_search
from sidcore.api import ConfigError
from sidcore.api import DecodeModel, SidCatalog
from sid_decoders.config import PureBeamConfig

__all__ = ["PureBeamDecoder", "build"]


@attrs.frozen(kw_only=True, eq=False)
class PureBeamDecoder:
    """Unconstrained beam search (`sidcore.interfaces.Decoder`).

    Attributes:
        cfg: decoder options.
        eos_id: end-of-sequence token.
        sid_depth: free tokens in fixed-length mode.
        suffix_ids: tokens force-scored after the free tokens in fixed-length mode.
    """

    cfg: PureBeamConfig
    eos_id: int
    sid_depth: int
    suffix_ids: tuple[int, ...]

    def max_new_tokens(self) -> int:
        if self.cfg.fixed_length:
            return self.sid_depth + len(self.suffix_ids) + 1
        return self.cfg.max_new_tokens

    def decode(
        self, model: DecodeModel, input_ids: jax.Array, lengths: jax.Array, *, num_beams: int
    ) -> tuple[jax.Array, jax.Array]:
        """Return ``(tokens [B, K, T] (-1 after EOS), scores [B, K])`` best first.

        Raises:
            ConfigError: ``num_beams`` is not in ``[1, vocab_size]`` or a forced id is out of vocabulary.
        """
        k = int(num_beams)
        if k < 1 or k > model.vocab_size:
            raise ConfigError(f"decoder 'pure_beam': num_beams={k} must be in [1, {model.vocab_size}]")
        check_vocab(max(self.eos_id, *self.suffix_ids), model.vocab_size, "decoder 'pure_beam': eos/suffix")
        cache_len = input_ids.shape[1] + self.max_new_tokens()
        if self.cfg.fixed_length:
            policies = [free_policy(k)] * self.sid_depth
            policies += [forced_policy(tok) for tok in (*self.suffix_ids, self.eos_id)]
            return level_beam_search(
                model, input_ids, lengths, num_beams=k, policies=policies, cache_len=cache_len
            )
        return open_beam_search(
            model,
            input_ids,
            lengths,
            num_beams=k,
            eos_id=self.eos_id,
            max_new_tokens=self.cfg.max_new_tokens,
            length_penalty=self.cfg.length_penalty,
            early_stopping=self.cfg.early_stopping,
            cache_len=cache_len,
        )


def build(cfg: PureBeamConfig, *, catalog: SidCatalog, eos_id: int) -> PureBeamDecoder:
    """Factory registered as decoder ``pure_beam`` (the catalog supplies the SID depth and suffix)."""
    depth = cfg.sid_depth if cfg.sid_depth is not None else int(catalog.token_ids.shape[1])
    return PureBeamDecoder(
        cfg=cfg, eos_id=int(eos_id), sid_depth=depth, suffix_ids=tuple(int(x) for x in catalog.suffix_ids)
    )
