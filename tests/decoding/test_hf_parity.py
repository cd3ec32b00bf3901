"""Parity with transformers ``generate`` on a tiny random Qwen2: trie-constrained and pure beam search.

The constrained reference is HF beam search with a trie logits processor written here from the
upstream semantics (reference-spec §6.1): ``log_softmax``, then ``-1e6`` on every token that does
not continue a catalog path given the tokens generated so far (the first step's key is the root, as
our prompts are random rather than ending in ``"### Response:\\n"``). With ``length_penalty=0`` HF's
``sequences_scores`` are sums of the processed log-probs, i.e. of the full-vocabulary log-probs.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
import sidcore.model as model_pkg  # noqa: E402 - a kernel import error must fail, not skip
if not hasattr(model_pkg, "load_hf"):  # pragma: no cover - the model layer is not there yet
    pytest.skip("sidcore.model.load_hf is not available", allow_module_level=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from sid_decoders.config import PureBeamConfig, TrieConfig  # noqa: E402
from sid_decoders import pure_beam, trie  # noqa: E402
from sidcore.decoding import LMDecodeModel  # noqa: E402
from sidcore.testing.decoders import catalog_paths, make_prompts, random_catalog  # noqa: E402

VOCAB = 300
EOS = 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(
        vocab_size=VOCAB, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=128, initializer_range=0.2,
        bos_token_id=EOS, eos_token_id=EOS, pad_token_id=EOS,
    )
    hf = transformers.Qwen2ForCausalLM(cfg).eval()
    path = tmp_path_factory.mktemp("tiny_qwen2")
    hf.save_pretrained(path)
    ours, _ = model_pkg.load_hf(path)
    return hf, ours


def _left_pad(ids, lens, pad):
    out = np.full_like(ids, pad)
    mask = np.zeros_like(ids)
    for b, n in enumerate(lens):
        out[b, ids.shape[1] - n :] = ids[b, :n]
        mask[b, ids.shape[1] - n :] = 1
    return torch.tensor(out, dtype=torch.long), torch.tensor(mask, dtype=torch.long)


class TrieProcessor(transformers.LogitsProcessor):
    """Upstream-style trie mask (a fresh instance per generate call; ``count`` = generated tokens)."""

    def __init__(self, paths):
        self.allowed = {}
        for p in paths.tolist():
            for t in range(len(p)):
                self.allowed.setdefault(tuple(p[:t]), set()).add(p[t])
        self.count = 0

    def __call__(self, input_ids, scores):
        scores = torch.log_softmax(scores, dim=-1)
        mask = torch.full_like(scores, -1e6)
        for row in range(input_ids.shape[0]):
            key = tuple(input_ids[row, input_ids.shape[1] - self.count :].tolist()) if self.count else ()
            for tok in self.allowed.get(key, ()):
                mask[row, tok] = 0.0
        self.count += 1
        return scores + mask


def _hf_generate(hf, ids, lens, k, t, eos, processors=(), **kw):
    x, mask = _left_pad(ids, lens, eos)
    gen = transformers.GenerationConfig(
        num_beams=k, num_return_sequences=k, do_sample=False, max_new_tokens=t, pad_token_id=eos,
        eos_token_id=eos, return_dict_in_generate=True, output_scores=True, **kw,
    )
    with torch.no_grad():
        out = hf.generate(input_ids=x, attention_mask=mask, generation_config=gen,
                          logits_processor=transformers.LogitsProcessorList(list(processors)))
    new = out.sequences[:, ids.shape[1] :].numpy()
    new = np.pad(new, ((0, 0), (0, t - new.shape[1])), constant_values=eos)
    return new.reshape(len(lens), k, t), out.sequences_scores.numpy().reshape(len(lens), k)


def _ours(model, decoder, ids, lens, k):
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, ids, lens):
        lm = LMDecodeModel(nnx.merge(graphdef, state), VOCAB)
        return decoder.decode(lm, ids, lens, num_beams=k)

    tokens, scores = run(state, jnp.asarray(ids), jnp.asarray(lens))
    return np.asarray(tokens), np.asarray(scores)


def test_trie_decoder_matches_hf_generate_with_trie_processor(tiny):
    hf, ours = tiny
    catalog = random_catalog(200, 3, seed=21, base=100, level_size=40, first_tokens=12)
    paths = catalog_paths(catalog, EOS)
    ids, lens = make_prompts(6, 9, seed=21, low=3, high=VOCAB)
    k, t = 10, paths.shape[1]
    hf_t, hf_s = _hf_generate(hf, ids, lens, k, t, EOS, [TrieProcessor(paths)], length_penalty=0.0,
                              early_stopping=True)
    tokens, scores = _ours(ours, trie.build(TrieConfig(), catalog=catalog, eos_id=EOS), ids, lens, k)
    np.testing.assert_array_equal(tokens, hf_t)
    np.testing.assert_allclose(scores, hf_s, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("lp, es", [(0.0, True), (1.0, False)])
def test_pure_beam_matches_hf_generate(tiny, lp, es):
    hf, ours = tiny
    ids, lens = make_prompts(4, 7, seed=22, low=3, high=VOCAB)
    # EOS = the token HF's own beams use most, so that hypotheses finish at different lengths.
    probe, _ = _hf_generate(hf, ids, lens, 4, 5, EOS, length_penalty=lp, early_stopping=es)
    eos = int(np.bincount(probe[:, :, :4].reshape(-1)).argmax())
    catalog = random_catalog(4, 3, seed=0)
    decoder = pure_beam.build(PureBeamConfig(max_new_tokens=5, length_penalty=lp, early_stopping=es),
                              catalog=catalog, eos_id=eos)
    hf_t, hf_s = _hf_generate(hf, ids, lens, 4, 5, eos, length_penalty=lp, early_stopping=es)
    tokens, scores = _ours(ours, decoder, ids, lens, 4)
    np.testing.assert_array_equal(np.where(tokens < 0, eos, tokens), hf_t)
    np.testing.assert_allclose(scores, hf_s, rtol=2e-5, atol=1e-6)
    assert (tokens[..., -1] < 0).any(), "no hypothesis finished early: the test lost its EOS coverage"
