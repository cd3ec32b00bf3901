"""sid's baselines = a PyTorch transcription of upstream ``sasrec.py`` on fixed weights: logits of each
model (eval mode), the loss for each loss type with and without the DRO term, and two Adam steps
with L2 (fixed negatives, dropout 0)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sidcore.baselines.config import BaselineConfig
from sidcore.baselines.losses import loss_value, metrics_from_ranks, propensity, target_ranks
from sidcore.baselines.models import build_model, flat_params, load_flat_params
from sidcore.baselines.train import make_optimizer

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

ITEMS, L, H = 30, 6, 8


def _up():
    path = Path(__file__).with_name("torch_upstream.py")
    spec = importlib.util.spec_from_file_location("torch_upstream", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


UP = _up()


def _torch_model(name: str, heads: int = 1):
    torch.manual_seed(0)
    if name == "sasrec":
        m = UP.UpSASRec(H, ITEMS, L, 0.3, num_heads=heads)
    elif name == "gru4rec":
        m = UP.UpGRU(H, ITEMS, L)
    else:
        m = UP.UpCaser(H, ITEMS, L, 4, (2, 3, 4), 0.3)
    with torch.no_grad():  # trained-looking LayerNorm / bias values, so no parameter is a trivial identity
        for k, p in m.named_parameters():
            if "ln" in k or "layer_norm" in k or k.endswith("bias"):
                p.add_(0.3 * torch.randn_like(p))
            if "item_embeddings" in k:
                p.mul_(30.0)
    return m.eval()


def _jax_model(name: str, tm, heads: int = 1):
    m = build_model(name, item_num=ITEMS, seq_len=L, hidden=H, dropout_rate=0.3, seed=1, num_heads=heads,
                    num_filters=4, filter_sizes=(2, 3, 4))
    load_flat_params(m, {k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return m


def _batch(b: int = 7):
    rng = np.random.default_rng(3)
    lengths = np.array([1, 2, 3, 6, 5, 4, 6][:b], np.int64)
    seq = np.full((b, L), ITEMS, np.int64)
    for i, n in enumerate(lengths):
        seq[i, :n] = rng.integers(0, ITEMS, n)
    targets = rng.integers(0, ITEMS, b)
    neg = (targets + 1 + rng.integers(0, ITEMS - 1, b)) % ITEMS
    return seq, lengths, targets, neg


@pytest.mark.parametrize("name,heads", [("sasrec", 1), ("sasrec", 2), ("gru4rec", 1), ("caser", 1)])
def test_logits_match_upstream(name, heads):
    tm = _torch_model(name, heads)
    jm = _jax_model(name, tm, heads)
    seq, lengths, _, _ = _batch()
    with torch.no_grad():
        want = tm(torch.as_tensor(seq), torch.as_tensor(lengths)).numpy()
    got = np.asarray(jm(jnp.asarray(seq, jnp.int32), jnp.asarray(lengths, jnp.int32)))
    assert got.shape == (len(seq), ITEMS)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.abs(want).max() > 0.1  # the check is not vacuous


def test_flat_params_are_upstream_state_dict():
    for name in ("sasrec", "gru4rec", "caser"):
        tm = _torch_model(name)
        jm = _jax_model(name, tm)
        sd = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
        flat = flat_params(jm)
        assert sorted(flat) == sorted(sd)
        for k in sd:
            np.testing.assert_array_equal(flat[k], sd[k])


@pytest.mark.parametrize("loss_type", ["bce", "ce"])
@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "caser"])
def test_loss_matches_upstream(name, loss_type):
    """Without (alpha 0) and with the DRO term."""
    tm = _torch_model(name)
    jm = _jax_model(name, tm)
    seq, lengths, targets, neg = _batch()
    train_targets = np.random.default_rng(5).integers(0, ITEMS, 40)
    ps64 = UP.up_propensity(train_targets, ITEMS)
    np.testing.assert_allclose(propensity(train_targets, ITEMS), ps64, rtol=1e-6)
    with torch.no_grad():
        out = tm(torch.as_tensor(seq), torch.as_tensor(lengths))
    logits = jm(jnp.asarray(seq, jnp.int32), jnp.asarray(lengths, jnp.int32))
    for alpha in (0.0, 0.5):
        want = UP.up_loss(out, torch.as_tensor(targets), torch.as_tensor(neg), torch.tensor(ps64),
                          loss_type=loss_type, alpha=alpha, beta=0.7).item()
        got = float(loss_value(logits, jnp.asarray(targets, jnp.int32), jnp.asarray(neg, jnp.int32),
                               jnp.asarray(propensity(train_targets, ITEMS)), loss_type=loss_type, alpha=alpha,
                               beta=0.7))
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name,loss_type", [("sasrec", "bce"), ("gru4rec", "ce"), ("caser", "bce")])
def test_two_adam_steps_match_upstream(name, loss_type):
    """torch.optim.Adam(lr, eps=1e-8, weight_decay=l2) vs make_optimizer, dropout 0, fixed negatives."""
    tm = _torch_model(name)
    for mod in tm.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    jm = _jax_model(name, tm)
    tm.train()
    cfg = BaselineConfig(model=name, lr=1e-2, l2_decay=1e-2, alpha=0.3, loss_type=loss_type)
    seq, lengths, targets, neg = _batch()
    ps64 = UP.up_propensity(targets, ITEMS)
    opt = torch.optim.Adam(tm.parameters(), lr=cfg.lr, eps=1e-8, weight_decay=cfg.l2_decay)
    graphdef, params = nnx.split(jm, nnx.Param)
    tx = make_optimizer(cfg)
    state = tx.init(params)
    ps = jnp.asarray(propensity(targets, ITEMS))

    def loss_fn(p):
        logits = nnx.merge(graphdef, p)(jnp.asarray(seq, jnp.int32), jnp.asarray(lengths, jnp.int32))
        return loss_value(logits, jnp.asarray(targets, jnp.int32), jnp.asarray(neg, jnp.int32), ps,
                          loss_type=loss_type, alpha=cfg.alpha, beta=cfg.beta)

    for _ in range(2):
        opt.zero_grad()
        out = tm(torch.as_tensor(seq), torch.as_tensor(lengths))
        UP.up_loss(out, torch.as_tensor(targets), torch.as_tensor(neg), torch.tensor(ps64), loss_type=loss_type,
                   alpha=cfg.alpha, beta=cfg.beta).backward()
        opt.step()
        grads = jax.grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params)
        params = jax.tree.map(lambda a, b: a + b, params, updates)
    nnx.update(jm, params)
    got = flat_params(jm)
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(got[k], v.detach().numpy(), rtol=1e-4, atol=2e-6, err_msg=k)


def test_full_ranking_metrics_match_upstream_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, ITEMS)).astype(np.float32)
    targets = rng.integers(0, ITEMS, 50)
    ranks = np.asarray(target_ranks(jnp.asarray(logits), jnp.asarray(targets, jnp.int32)))
    pred = torch.as_tensor(logits)  # upstream calculate_hit_games_cuda
    rank_list = pred.shape[1] - 1 - torch.argsort(torch.argsort(pred))
    up_rank = torch.gather(rank_list, 1, torch.as_tensor(targets).view(-1, 1)).view(-1).numpy()
    np.testing.assert_array_equal(ranks, up_rank)
    means, _ = metrics_from_ranks(ranks, (1, 5, 20))
    for k in (1, 5, 20):
        assert means[f"hr@{k}"] == pytest.approx(float((up_rank < k).mean()))
        assert means[f"ndcg@{k}"] == pytest.approx(float(((1 / np.log2(up_rank + 2)) * (up_rank < k)).mean()))
