"""The trie decoder's fused scoring (candidate logits against a chunked log-sum-exp) returns the same
beams and scores as the dense full-vocabulary log-softmax path, padded vocabulary included."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sid_decoders import trie
from sid_decoders.config import TrieConfig
from sidcore.decoding import LMDecodeModel
from sidcore.model import Qwen2Config, Qwen2ForCausalLM
from sidcore.testing.decoders import make_prompts, random_catalog


def test_fused_equals_dense_and_chunked_lse_is_exact():
    real_vocab, padded = 250, 256
    model = Qwen2ForCausalLM(Qwen2Config.tiny(vocab_size=padded, hidden_size=32, num_hidden_layers=1),
                             rngs=nnx.Rngs(3))
    catalog = random_catalog(60, 3, seed=5, base=100, level_size=30, first_tokens=6)
    ids, lens = make_prompts(3, 8, seed=4, low=3, high=real_vocab)
    graphdef, state = nnx.split(model)
    out = {}
    for fused in (True, False):
        dec = trie.build(TrieConfig(fused_scoring=fused), catalog=catalog, eos_id=2)

        @jax.jit
        def run(state, ids, lens, dec=dec):
            return dec.decode(LMDecodeModel(nnx.merge(graphdef, state), real_vocab), ids, lens, num_beams=12)

        out[fused] = [np.asarray(x) for x in run(state, jnp.asarray(ids), jnp.asarray(lens))]
    np.testing.assert_array_equal(out[True][0], out[False][0])
    np.testing.assert_allclose(out[True][1], out[False][1], atol=1e-5)
    h = jax.random.normal(jax.random.PRNGKey(0), (5, 32))
    want = jax.nn.logsumexp(model.logits(h)[:, :real_vocab], axis=-1)
    for chunk in (7, 64, 250, 4096):  # uneven last chunk, exact fit, one chunk
        np.testing.assert_allclose(model.logsumexp(h, real_vocab, chunk=chunk), want, rtol=1e-6, atol=1e-5)


def test_lse_chunk_keeps_the_block_small_and_the_result_exact():
    """Wide batches get narrower vocabulary chunks (cache-sized on CPU); the log-sum-exp is the same."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from sidcore.decoding.adapter import lse_chunk
    from sidcore.model.lse import chunked_logsumexp

    if jax.default_backend() == "cpu":
        assert lse_chunk(50) == 8192 and lse_chunk(1600) == 640 and lse_chunk(10**6) == 512
    h = jax.random.normal(jax.random.key(0), (300, 16))
    w = jax.random.normal(jax.random.key(1), (5000, 16))
    want = jax.nn.logsumexp(h @ w[:4999].T, axis=-1)
    for chunk in (8192, lse_chunk(300), 512, 640):
        got = chunked_logsumexp(h, w, 4999, chunk)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-5 * float(jnp.abs(want).max()))
