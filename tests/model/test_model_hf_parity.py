"""HF parity: transformers' torch Qwen2 / Qwen3 (random init, saved locally) vs our model via `load_hf`."""

from __future__ import annotations

import numpy as np
import pytest

from sidcore.model import load_hf

pytestmark = pytest.mark.torch

VOCAB = 128


def hf_tiny_config(family: str, tied: bool):
    """A tiny transformers config of `family`; Qwen3 gets head_dim 32 (!= hidden 64 / 4 heads)."""
    transformers = pytest.importorskip("transformers")
    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, rope_theta=1e6, tie_word_embeddings=tied,
                  max_position_embeddings=256)
    if family == "qwen3":
        return transformers.Qwen3Config(head_dim=32, **common), transformers.Qwen3ForCausalLM
    return transformers.Qwen2Config(**common), transformers.Qwen2ForCausalLM


def _hf_checkpoint(tmp_path, tied: bool, family: str):
    torch = pytest.importorskip("torch")
    config, model_cls = hf_tiny_config(family, tied)
    torch.manual_seed(0)
    model = model_cls(config).eval()
    with torch.no_grad():  # make biases and norm scales non-trivial so their mapping is tested
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):  # incl. Qwen3's per-head q_norm / k_norm
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    model.config._attn_implementation = "eager"
    out = tmp_path / f"hf_{family}_{'tied' if tied else 'untied'}"
    model.save_pretrained(out)
    return model, out


def _torch_logits(model, ids, mask):
    import torch

    pos = np.maximum(np.cumsum(mask, -1) - 1, 0)
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    position_ids=torch.tensor(pos))
    return out.logits.float().numpy()


@pytest.fixture(scope="module", params=[(f, t) for f in ("qwen2", "qwen3") for t in (True, False)],
                ids=lambda p: f"{p[0]}-{'tied' if p[1] else 'untied'}")
def pair(request, tmp_path_factory):
    family, tied = request.param
    hf, path = _hf_checkpoint(tmp_path_factory.mktemp("ckpt"), tied, family)
    ours, cfg = load_hf(path)
    assert cfg.tie_word_embeddings is tied and cfg.rope_theta == 1e6 and cfg.model_type == family
    assert (ours.lm_head is None) is tied
    if family == "qwen3":
        assert cfg.resolved_head_dim == 32 and ours.model.layers[0].self_attn.q_norm is not None
        assert ours.model.layers[0].self_attn.q_proj.bias is None
    return hf, ours


def _batch(lengths, L, side, seed):
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), L), np.int64)
    mask = np.zeros((len(lengths), L), np.int64)
    for b, n in enumerate(lengths):
        sl = slice(L - n, L) if side == "left" else slice(0, n)
        ids[b, sl] = rng.integers(1, VOCAB, n)
        mask[b, sl] = 1
    return ids, mask


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_matches_torch(pair, side):
    hf, ours = pair
    ids, mask = _batch([10, 6, 3], 10, side, seed=1)
    ref = _torch_logits(hf, ids, mask)
    got = np.asarray(ours(ids, attention_mask=mask))
    real = mask.astype(bool)
    assert got.shape == ref.shape
    assert np.abs(got[real] - ref[real]).max() <= 1e-5
    assert np.isfinite(got).all()  # padding rows/positions must not produce NaN


def test_packed_row_equals_each_segment_alone(pair):
    hf, ours = pair
    rng = np.random.default_rng(2)
    a, b = rng.integers(1, VOCAB, 5), rng.integers(1, VOCAB, 4)
    ids = np.concatenate([a, b, [0, 0, 0]])[None]  # [1, 12]
    seg = np.array([[1] * 5 + [2] * 4 + [0] * 3])
    got = np.asarray(ours(ids, segment_ids=seg))[0]
    ref_a = _torch_logits(hf, a[None], np.ones((1, 5), np.int64))[0]
    ref_b = _torch_logits(hf, b[None], np.ones((1, 4), np.int64))[0]
    assert np.abs(got[:5] - ref_a).max() <= 1e-5
    assert np.abs(got[5:9] - ref_b).max() <= 1e-5
    assert np.isfinite(got).all()
