"""`LMDecodeModel` over the NNX Qwen2 (padded vocab masked, usable inside jit) and plugin registration."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sid_decoders.config import TrieConfig
from sid_decoders.trie import build
from sidcore.decoding import LMDecodeModel
from sidcore.model import Qwen2Config, Qwen2ForCausalLM
from sidcore.testing.decoders import catalog_paths, make_prompts, random_catalog


def _tiny_model(vocab=64):
    cfg = Qwen2Config.tiny(vocab_size=vocab)
    return Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(0))


def test_padded_vocab_is_masked_and_decoding_runs_from_split_state():
    model = _tiny_model(64)
    catalog = random_catalog(20, 3, seed=1)  # ids 10..33 < 60
    decoder = build(TrieConfig(), catalog=catalog, eos_id=1)
    graphdef, state = nnx.split(model)
    ids, lens = make_prompts(2, 6, seed=1)
    traces = []

    @jax.jit
    def run(state, ids, lens):
        traces.append(1)
        lm = LMDecodeModel(nnx.merge(graphdef, state), real_vocab_size=60)
        logits, _ = lm.prefill(ids, lens, 12)
        return logits, decoder.decode(lm, ids, lens, num_beams=4)

    logits, (tokens, scores) = run(state, jnp.asarray(ids), jnp.asarray(lens))
    run(state, jnp.asarray(ids[::-1]), jnp.asarray(lens[::-1]))
    assert len(traces) == 1
    logits = np.asarray(logits)
    assert logits.dtype == np.float32
    assert np.all(np.isneginf(logits[:, 60:])) and np.all(np.isfinite(logits[:, :60]))
    catalog_set = {tuple(p) for p in catalog_paths(catalog, 1).tolist()}
    assert all(tuple(x) in catalog_set for x in np.asarray(tokens).reshape(-1, 5).tolist())
    # Scores equal the model's own log-probs of the chosen paths (full forward, no cache).
    full = jnp.concatenate([jnp.asarray(ids[:1, : lens[0]]).repeat(4, 0), tokens[0]], axis=1)
    logp = jax.nn.log_softmax(model(full)[:, lens[0] - 1 : -1].at[..., 60:].set(-jnp.inf), axis=-1)
    want = jnp.take_along_axis(logp, tokens[0][..., None], axis=-1)[..., 0].sum(-1)
    np.testing.assert_allclose(np.asarray(scores[0]), np.asarray(want), atol=1e-4)


def test_plugin_registers_both_decoders_without_importing_jax():
    code = (
        "import sys, sid_decoders\n"
        "names = []\n"
        "sid_decoders.register_decoders(lambda name, factory, **kw: names.append((name, factory)))\n"
        "print(sorted(names)); assert 'jax' not in sys.modules, 'jax imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "('pure_beam', 'sid_decoders.pure_beam:build')" in out
    assert "('trie', 'sid_decoders.trie:build')" in out


def test_eval_casts_float32_weights_to_bf16_compute_once_without_changing_results():
    """`Evaluator.predict` casts float params to a narrower compute dtype once; every use casts anyway."""
    from sidcore.eval.evaluator import params_in_compute_dtype
    from sidcore.model.merge import make_merge

    cfg = Qwen2Config.tiny(vocab_size=64, tie_word_embeddings=False)
    model = Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(3), param_dtype=jnp.float32, compute_dtype=jnp.bfloat16)
    graphdef, state = nnx.split(model)
    params = nnx.to_pure_dict(state)
    cast = params_in_compute_dtype(params, "bfloat16")
    assert {x.dtype for x in jax.tree.leaves(cast)} == {jnp.dtype(jnp.bfloat16)}
    assert params_in_compute_dtype(params, "float32") is params  # nothing narrower: untouched
    merge = make_merge(graphdef, jax.tree.map(lambda v: v, state))
    ids, lens = make_prompts(2, 6, seed=4)

    @jax.jit
    def prefill_logits(p):
        last, _ = merge(p).prefill(ids, lens, 8)
        return last

    np.testing.assert_array_equal(np.asarray(prefill_logits(params)), np.asarray(prefill_logits(cast)))
