"""GRPO loss and gradients vs a PyTorch transcription of upstream MiniOneRec ``compute_loss``.

The reference below is written here from the formulas (rl-and-sid.md §1): left-padded prompts
concatenated with the completions, ``logits_to_keep = T + 1``, selective log-softmax, completion mask
through the first EOS, k3 KL to a frozen reference, ratio ``exp(logp - logp.detach())`` (or the
clipped ratio against given old log-probs), and the three aggregations. Both sides load the same
tiny random `transformers.Qwen2ForCausalLM` (ours through `load_hf`). Ours runs in both update layouts: G full
rows per prompt and one shared-prefix tree row per prompt (`sidcore.rl.group_forward`).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from sidcore.model import load_hf  # noqa: E402
from sidcore.model.hf_params import flatten_params, params_to_hf  # noqa: E402
from sidcore.rl.group_forward import group_batch, group_token_logps  # noqa: E402
from sidcore.rl.loss import completion_batch, make_loss_fn, sync_reference  # noqa: E402
from sidcore.model.merge import make_merge  # noqa: E402

VOCAB, EOS, PAD = 160, 5, 5
B, G, T = 2, 4, 5
LENS = [7, 4]
BETA = 0.04  # larger than upstream's 1e-3 so the KL term is visible in the gradients


def _hf(seed, path):
    cfg = transformers.Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                   rope_theta=1e6, max_position_embeddings=64, eos_token_id=EOS)
    torch.manual_seed(seed)
    model = transformers.Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif not name.endswith("norm.weight"):
                p.mul_(8.0)  # sharper distributions than the 0.02 init: non-trivial log-probs
    model.config._attn_implementation = "eager"
    model.save_pretrained(path)
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl_loss")
    hf_pol, hf_ref = _hf(0, root / "pol"), _hf(1, root / "ref")
    rng = np.random.default_rng(0)
    prompts = [rng.integers(10, VOCAB, n).tolist() for n in LENS]
    comp = rng.integers(10, VOCAB, (B, G, T))
    comp[:, :, -1] = EOS
    comp[0, 1, 2] = EOS  # an early EOS: the two tokens after it are masked out
    adv = rng.normal(size=(B * G,)).astype(np.float32)
    noise = (0.3 * rng.normal(size=(B * G, T))).astype(np.float32)
    return hf_pol, hf_ref, root, prompts, comp, adv, noise


def _torch_logps(model, prompts, comp):
    lp = max(LENS)
    rows, masks = [], []
    for b, p in enumerate(prompts):
        for g in range(G):
            rows.append([PAD] * (lp - len(p)) + p + comp[b, g].tolist())
            masks.append([0] * (lp - len(p)) + [1] * len(p))
    ids = torch.tensor(rows)
    c = ids[:, lp:]
    is_eos = c == EOS
    eos_idx = torch.full((c.shape[0],), T, dtype=torch.long)
    eos_idx[is_eos.any(1)] = is_eos.int().argmax(1)[is_eos.any(1)]
    cmask = (torch.arange(T)[None, :] <= eos_idx[:, None]).int()
    attn = torch.cat([torch.tensor(masks), cmask], 1)
    logits = model(input_ids=ids, attention_mask=attn, logits_to_keep=T + 1).logits[:, :-1]
    logp = torch.gather(logits.log_softmax(-1), 2, c[..., None])[..., 0]
    return logp, cmask.float()


def _torch_loss(pol, ref, prompts, comp, adv, agg, old=None, eps=0.2):
    pol.zero_grad()
    logp, mask = _torch_logps(pol, prompts, comp)
    with torch.no_grad():
        ref_logp, _ = _torch_logps(ref, prompts, comp)
    kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
    a = torch.tensor(adv)[:, None]
    base = logp.detach() if old is None else torch.tensor(old)
    if agg == "gspo":
        log_ratio = ((logp - base) * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True)
        log_ratio = log_ratio.expand_as(logp)
    else:
        log_ratio = logp - base
    coef = torch.exp(log_ratio)
    if old is None:
        per_token = -(coef * a - BETA * kl)
    else:
        per_token = -(torch.min(coef * a, torch.clamp(coef, 1 - eps, 1 + eps) * a) - BETA * kl)
    if agg == "dapo":
        loss = (per_token * mask).sum() / mask.sum()
    else:
        loss = ((per_token * mask).sum(1) / mask.sum(1)).mean()
    loss.backward()
    grads = {n: p.grad.detach().numpy().copy() for n, p in pol.named_parameters()}
    return float(loss.detach()), grads, logp.detach().numpy()


def _ours(root, prompts, comp, adv, agg, old=None, ref_is_policy=False, shared=False):
    pol, _ = load_hf(root / "pol")
    ref, _ = load_hf(root / ("pol" if ref_is_policy else "ref"))
    gd, st = nnx.split(pol)
    merge = make_merge(gd, st)
    params = nnx.to_pure_dict(st)
    ref_params = nnx.to_pure_dict(nnx.split(ref)[1])
    ids = np.full((B, max(LENS)), PAD, np.int32)
    for b, p in enumerate(prompts):
        ids[b, : len(p)] = p
    build = group_batch if shared else completion_batch
    batch = build(jnp.asarray(ids), jnp.asarray(LENS), jnp.asarray(comp, jnp.int32), pad_id=PAD, eos_id=EOS)
    batch["advantages"] = jnp.asarray(adv)
    if old is not None:
        batch["old_logp"] = jnp.asarray(old)
    logps = (lambda m, bt: group_token_logps(m, bt, VOCAB, num_generations=G)) if shared else None
    fn = make_loss_fn(merge, real_vocab=VOCAB, beta=BETA, aggregation=agg, logps=logps)
    (loss, aux), grads = jax.jit(jax.value_and_grad(fn, has_aux=True))(params, batch, ref_params)
    return float(loss), params_to_hf(flatten_params(grads)), aux, batch


@pytest.mark.parametrize("layout", ["full_rows", "shared_prefix"])
@pytest.mark.parametrize("clipped", [False, True], ids=["single", "clipped"])
@pytest.mark.parametrize("agg", ["sequence-mean-token-mean", "dapo", "gspo"])
def test_loss_and_grads_match_upstream_transcription(setup, agg, clipped, layout):
    hf_pol, hf_ref, root, prompts, comp, adv, noise = setup
    old = None
    if clipped:
        with torch.no_grad():
            old = _torch_logps(hf_pol, prompts, comp)[0].numpy() + noise
    t_loss, t_grads, t_logp = _torch_loss(hf_pol, hf_ref, prompts, comp, adv, agg, old=old)
    o_loss, o_grads, aux, batch = _ours(root, prompts, comp, adv, agg, old=old, shared=layout == "shared_prefix")
    np.testing.assert_array_equal(np.asarray(batch["mask"]).sum(1), [5, 3, 5, 5, 5, 5, 5, 5])
    np.testing.assert_allclose(np.asarray(aux["logp"]) * np.asarray(batch["mask"]),
                               t_logp * np.asarray(batch["mask"]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(o_loss, t_loss, rtol=1e-5, atol=1e-6)
    assert float(np.asarray(aux["kl_seq"]).mean()) > 1e-3  # the KL term is exercised
    if clipped:
        assert 0.0 < float(aux["clip_frac"]) < 1.0  # some tokens clipped, some not
    assert set(o_grads) == set(t_grads)
    scale = max(float(np.abs(g).max()) for g in t_grads.values())
    for name, g in t_grads.items():
        np.testing.assert_allclose(o_grads[name], g, rtol=1e-4, atol=1e-5 * scale, err_msg=name)


def test_step0_loss_and_kl_are_zero_with_ref_equal_policy(setup):
    _, _, root, prompts, comp, _, _ = setup
    rewards = np.zeros((B, G), np.float32)
    rewards[:, 0] = 1.0
    from sidcore.rl.advantages import compute_advantages

    adv = compute_advantages(rewards).reshape(-1)
    loss, _, aux, _ = _ours(root, prompts, comp, adv, "sequence-mean-token-mean", ref_is_policy=True)
    assert np.all(np.asarray(aux["kl_seq"]) == 0.0)
    assert abs(loss) <= 1e-6 * float(np.abs(adv).max())


def test_ref_sync_formula():
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    theta = {"w": jax.random.normal(k[0], (3, 4)), "b": {"c": jax.random.normal(k[1], (2,))}}
    ref = jax.tree.map(lambda x: x * 0.5 + 1.0, theta)
    out = sync_reference(theta, ref, 0.6)
    for o, t, r in zip(jax.tree.leaves(out), jax.tree.leaves(theta), jax.tree.leaves(ref)):
        np.testing.assert_allclose(o, 0.6 * t + 0.4 * r, rtol=1e-6)
