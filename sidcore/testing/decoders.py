"""Decoder conformance suite and its test doubles, for built-in and third-party decoder plugins.

* `ToyDecodeModel`: a pure-JAX `DecodeModel` whose next-token distribution depends on the whole
  prefix through a recurrent state kept in the cache (batch axis first, like a KV cache), with an
  optional padded-vocabulary tail of ``-inf`` logits. Cheap enough to brute-force.
* `random_catalog`: a small random `SidCatalog` with SID-like per-level token ranges.
* `path_scores`: sum of full-vocabulary log-probs of given token paths, computed token by token
  with the model alone (no beam logic) -- the brute-force reference.
* `reference_trie_search`: the constrained beam search written naively (Python lists per beam).
* `check_decoder`: the suite: shapes, ``K`` distinct sequences sorted by score, scores equal to the
  brute-force score of the returned tokens, and for constrained decoders catalog-only outputs that
  equal the brute-force ranking of the whole (tiny) catalog and the naive reference search.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from sidcore.interfaces import SidCatalog

__all__ = ["ToyDecodeModel", "random_catalog", "path_scores", "reference_trie_search", "check_decoder",
           "catalog_paths", "make_prompts"]

TOY_EOS = 1
TOY_SUFFIX = (5,)


class ToyDecodeModel:
    """A recurrent toy LM implementing `sidcore.interfaces.DecodeModel`.

    ``h_{i+1} = tanh(h_i W + E[x_i])``, ``logits = scale * h U``; the cache is ``{"h": [B, H],
    "pos": [B]}``. Columns ``>= real_vocab_size`` are ``-inf`` (padded vocabulary rows).

    Args:
        vocab_size: logits width ``V``.
        hidden: state width ``H``.
        seed: parameter seed.
        real_vocab_size: columns at or beyond it are masked (default: none).
        scale: logit scale (larger = peakier distributions).
    """

    def __init__(self, vocab_size: int = 64, *, hidden: int = 16, seed: int = 0,
                 real_vocab_size: int | None = None, scale: float = 3.0) -> None:
        rng = np.random.default_rng(seed)
        self.vocab_size = int(vocab_size)
        self.real_vocab_size = int(real_vocab_size or vocab_size)
        self.emb = rng.normal(size=(vocab_size, hidden)).astype(np.float32)  # [V, H]
        self.w = (rng.normal(size=(hidden, hidden)) / np.sqrt(hidden)).astype(np.float32)  # [H, H]
        self.out = (rng.normal(size=(hidden, vocab_size)) * scale / np.sqrt(hidden)).astype(np.float32)

    def _update(self, h: jax.Array, tokens: jax.Array) -> jax.Array:
        return jnp.tanh(h @ self.w + jnp.asarray(self.emb)[tokens])

    def _logits(self, h: jax.Array) -> jax.Array:
        logits = h @ self.out  # [B, V]
        return jnp.where(jnp.arange(self.vocab_size) < self.real_vocab_size, logits, -jnp.inf)

    def prefill(self, input_ids: jax.Array, lengths: jax.Array, cache_len: int) -> tuple[jax.Array, Any]:
        b, length = input_ids.shape
        if cache_len < length:
            raise ValueError(f"cache_len {cache_len} < prompt length {length}")

        def scan_fn(h: jax.Array, xs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
            tok, i = xs
            return jnp.where((i < lengths)[:, None], self._update(h, tok), h), None

        h0 = jnp.zeros((b, self.w.shape[0]), jnp.float32)
        h, _ = jax.lax.scan(scan_fn, h0, (input_ids.T, jnp.arange(length)))
        return self._logits(h), {"h": h, "pos": jnp.asarray(lengths, jnp.int32)}

    def step(self, tokens: jax.Array, cache: Any) -> tuple[jax.Array, Any]:
        h = self._update(cache["h"], tokens)
        return self._logits(h), {"h": h, "pos": cache["pos"] + 1}

    def np_logp(self, prompt: Any, tokens: Any) -> np.ndarray:
        """Numpy float64 twin: log-probs ``[len(tokens) + 1, V]`` after ``prompt``, then after each token."""
        h = np.zeros(self.w.shape[0])
        for tok in list(prompt):
            h = np.tanh(h @ self.w + self.emb[tok])
        rows = []
        for tok in [None, *list(tokens)]:
            if tok is not None:
                h = np.tanh(h @ self.w + self.emb[tok])
            logits = h @ self.out.astype(np.float64)
            logits[self.real_vocab_size :] = -np.inf
            m = logits.max()
            rows.append(logits - m - np.log(np.exp(logits - m).sum()))
        return np.stack(rows)


def random_catalog(n: int, depth: int, *, seed: int = 0, first_tokens: int | None = None,
                   level_size: int = 8, base: int = 10) -> SidCatalog:
    """``n`` distinct SIDs of ``depth`` levels; level ``l`` uses ids ``base + l*level_size`` onwards.

    ``first_tokens`` limits the number of distinct first-level tokens (to test ``N1 < K``).
    """
    rng = np.random.default_rng(seed)
    if n > level_size**depth:
        raise ValueError("catalog too large for the id ranges")
    rows: set[tuple[int, ...]] = set()
    n1 = first_tokens or level_size
    while len(rows) < n:
        row = [base + int(rng.integers(n1))]
        row += [base + lvl * level_size + int(rng.integers(level_size)) for lvl in range(1, depth)]
        rows.add(tuple(row))
    token_ids = np.array(sorted(rows), dtype=np.int32)[rng.permutation(n)]  # [N, D]
    sids = tuple("".join(f"<{chr(97 + i)}_{t}>" for i, t in enumerate(r)) for r in token_ids.tolist())
    return SidCatalog(sids=sids, token_ids=token_ids, suffix_ids=TOY_SUFFIX)


def catalog_paths(catalog: SidCatalog, eos_id: int) -> np.ndarray:
    """``[N, T]``: each item's SID tokens, suffix and EOS."""
    n = catalog.token_ids.shape[0]
    tail_ids = np.array([*catalog.suffix_ids, eos_id], np.int32)
    tail = np.broadcast_to(tail_ids, (n, tail_ids.size))
    return np.concatenate([np.asarray(catalog.token_ids, np.int32), tail], axis=1)


def make_prompts(batch: int, max_len: int, *, seed: int = 0, low: int = 40,
                 high: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Random right-padded prompts ``[B, max_len]`` (pad 0) of lengths in ``[1, max_len]``."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_len + 1, size=batch).astype(np.int32)
    lengths[0] = max_len
    ids = rng.integers(low, high, size=(batch, max_len)).astype(np.int32)
    ids[np.arange(max_len)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


def path_scores(model: "ToyDecodeModel", input_ids: np.ndarray, lengths: np.ndarray,
                paths: np.ndarray, *, length_penalty: float = 0.0) -> np.ndarray:
    """Brute-force scores ``[B, N]`` of token paths after each prompt (float64 numpy, no JAX).

    Args:
        model: the toy model (its numpy twin `ToyDecodeModel.np_logp` is used).
        input_ids: ``[B, L]`` right-padded prompts.
        lengths: ``[B]``.
        paths: ``[N, T]`` (same paths for every prompt) or ``[B, N, T]``; ``-1`` after EOS.
        length_penalty: each sum is divided by ``length ** length_penalty``.

    Returns:
        Sums of full-vocabulary log-probs, token by token.
    """
    paths = np.asarray(paths)
    if paths.ndim == 2:
        paths = np.broadcast_to(paths, (input_ids.shape[0],) + paths.shape)
    out = np.zeros(paths.shape[:2])
    for b in range(paths.shape[0]):
        for i, path in enumerate(paths[b].tolist()):
            toks = [x for x in path[: path.index(-1)]] if -1 in path else path
            logp = model.np_logp(input_ids[b, : lengths[b]], toks)  # [len, V]
            out[b, i] = logp[np.arange(len(toks)), toks].sum() / len(toks) ** length_penalty
    return out


def reference_trie_search(model: "ToyDecodeModel", input_ids: np.ndarray, lengths: np.ndarray,
                          paths: np.ndarray, num_beams: int) -> tuple[np.ndarray, np.ndarray]:
    """Constrained beam search written naively (lists of beams, numpy model), the semantic reference.

    At each level every beam extends by each allowed next token (the distinct continuations of its
    prefix among ``paths``); the ``K`` highest-scoring extensions survive (ties: earlier beam, smaller
    token). Returns ``(tokens [B, K, T], scores [B, K])`` sorted best first.
    """
    t_len = paths.shape[1]
    allowed: dict[tuple[int, ...], set[int]] = {}
    for p in paths.tolist():
        for t in range(t_len):
            allowed.setdefault(tuple(p[:t]), set()).add(p[t])
    out_t, out_s = [], []
    for b in range(input_ids.shape[0]):
        beams: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]
        for _t in range(t_len):
            cands = []
            for s, p in beams:
                logp = model.np_logp(input_ids[b, : lengths[b]], list(p))[-1]  # [V] after the prefix
                cands += [(s + float(logp[tok]), p + (tok,)) for tok in sorted(allowed[p])]
            cands.sort(key=lambda c: -c[0])  # stable: ties keep beam/token order
            beams = cands[:num_beams]
        out_t.append([p for _, p in beams])
        out_s.append([s for s, _ in beams])
    return np.array(out_t, np.int32), np.array(out_s, np.float32)


def check_decoder(build: Callable[..., Any], cfg: Any, *, constrained: bool, num_beams: int = 4,
                  depth: int = 2, n_items: int = 12, length_penalty: float = 0.0, seed: int = 0,
                  atol: float = 1e-5) -> None:
    """Run the decoder conformance suite (raises ``AssertionError`` on the first violation).

    Args:
        build: the decoder factory ``build(cfg, *, catalog, eos_id)``.
        cfg: its config instance.
        constrained: the decoder must emit catalog paths only (and is checked against brute force).
        num_beams: ``K`` for the main checks.
        depth: SID depth of the random catalog.
        n_items: catalog size (a full-catalog ranking with ``K = N`` is checked when constrained).
        length_penalty: how the decoder normalises finished scores (for the score check).
        seed: seed of catalog, prompts and toy model.
        atol: score tolerance.
    """
    catalog = random_catalog(n_items, depth, seed=seed, first_tokens=3)
    model = ToyDecodeModel(64, seed=seed, real_vocab_size=60)
    decoder = build(cfg, catalog=catalog, eos_id=TOY_EOS)
    ids, lens = make_prompts(3, 7, seed=seed)
    paths = catalog_paths(catalog, TOY_EOS)

    def decode(k: int) -> tuple[np.ndarray, np.ndarray]:
        fn = jax.jit(lambda i, n: decoder.decode(model, i, n, num_beams=k))
        tok, sc = fn(jnp.asarray(ids), jnp.asarray(lens))
        return np.asarray(tok), np.asarray(sc)

    tokens, scores = decode(num_beams)
    b, k = ids.shape[0], num_beams
    assert tokens.shape[:2] == (b, k) and scores.shape == (b, k), (tokens.shape, scores.shape)
    assert tokens.dtype == np.int32 and scores.dtype == np.float32
    assert tokens.shape[2] <= decoder.max_new_tokens()
    assert np.all(np.isfinite(scores)), scores
    assert np.all(np.diff(scores, axis=1) <= 0), f"scores not sorted best first: {scores}"
    for row in range(b):
        assert len({tuple(x) for x in tokens[row].tolist()}) == k, f"duplicate sequences: {tokens[row]}"
    recomputed = path_scores(model, ids, lens, tokens, length_penalty=length_penalty)  # [B, K]
    np.testing.assert_allclose(scores, recomputed, atol=atol, err_msg="score != brute-force score")
    assert not np.any(tokens >= model.real_vocab_size), "a padded vocabulary row was emitted"
    if callable(getattr(decoder, "decode_token_logps", None)):  # optional: what RL updates reuse
        got = jax.jit(lambda i, n: decoder.decode_token_logps(model, i, n, num_beams=k))(jnp.asarray(ids),
                                                                                         jnp.asarray(lens))
        if got is not None:
            t2, s2, lp = (np.asarray(x) for x in got)
            np.testing.assert_array_equal(t2, tokens, err_msg="decode_token_logps: other beams than decode")
            np.testing.assert_allclose(s2, scores, atol=atol)
            assert lp.shape == tokens.shape and lp.dtype == np.float32, (lp.shape, lp.dtype)
            np.testing.assert_allclose(lp.sum(-1), scores, atol=atol,
                                       err_msg="decode_token_logps: per-token log-probs do not sum to the score")
            for row in range(b):  # each term is that token's log-prob under the model, given its prefix
                for beam in range(k):
                    toks = [x for x in tokens[row, beam].tolist() if x >= 0]
                    want = model.np_logp(ids[row, :lens[row]], toks)[np.arange(len(toks)), toks]
                    np.testing.assert_allclose(lp[row, beam, :len(toks)], want, atol=atol,
                                               err_msg="decode_token_logps: a term is not its token's log-prob")
    if not constrained:
        return
    catalog_set = {tuple(p) for p in paths.tolist()}
    assert all(tuple(x) in catalog_set for x in tokens.reshape(-1, tokens.shape[2]).tolist())
    ref_t, ref_s = reference_trie_search(model, ids, lens, paths, k)
    np.testing.assert_array_equal(tokens, ref_t, err_msg="differs from the naive reference beam search")
    np.testing.assert_allclose(scores, ref_s, atol=atol)
    # K = N: beam search keeps every prefix, so it must return the exact brute-force ranking.
    full_t, full_s = decode(n_items)
    brute = path_scores(model, ids, lens, paths)  # [B, N]
    order = np.argsort(-brute, axis=1, kind="stable")
    np.testing.assert_array_equal(full_t, paths[order], err_msg="full ranking differs from brute force")
    np.testing.assert_allclose(full_s, np.take_along_axis(brute, order, 1), atol=atol)
