"""sid's RQ-VAE training step = the PyTorch transcription of upstream's step that
`bench/quantize_vs_ref.py` times (so the bench compares the same work), from the same weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import attrs
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sid_quantizers.config import RqvaeConfig
from sid_quantizers.rqvae import RQVAE, _chunk_fn, _step_fn, make_optimizer

torch = pytest.importorskip("torch")

CFG = RqvaeConfig(codebook_sizes=[5, 4, 3], layers=[16, 12], e_dim=6, learning_rate=1e-2, warmup_steps=2)


def _bench():
    path = Path(__file__).resolve().parents[2] / "bench" / "quantize_vs_ref.py"
    spec = importlib.util.spec_from_file_location("quantize_vs_ref", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("cfg", [CFG, attrs.evolve(CFG, grad_clip=0.05, quant_loss_weight=0.5, beta=0.5)])
def test_jax_step_equals_the_torch_reference_step(cfg):
    bench = _bench()
    x = np.random.default_rng(0).normal(size=(40, 10)).astype(np.float32)
    graphdef, state = nnx.split(RQVAE(10, cfg, rngs=nnx.Rngs(1)))
    tx = make_optimizer(cfg)
    init = bench.torch_params(jax.tree.map(np.array, state))
    tstep, _, (enc, dec, books) = bench.torch_rqvae(
        init, lr=cfg.learning_rate, warmup=cfg.warmup_steps,
        beta=cfg.beta, quant_weight=cfg.quant_loss_weight, clip=cfg.grad_clip)
    steps = 6
    run = _chunk_fn(_step_fn(graphdef, tx, cfg), 40, 40, jax.random.PRNGKey(0))
    (state, _), logs = run((state, tx.init(state)), jnp.asarray(x), jnp.arange(steps, dtype=jnp.int32))
    want = np.array([[float(v) for v in tstep(torch.from_numpy(x))] for _ in range(steps)])
    np.testing.assert_allclose(np.stack(logs, 1), want, rtol=1e-5)
    got = bench.torch_params(state)
    assert np.abs(got["encoder"][0][0] - init["encoder"][0][0]).max() > 1e-3  # the steps moved the weights
    for c, book in zip(got["codebooks"], books):
        np.testing.assert_allclose(c, book.detach().numpy(), rtol=1e-4, atol=1e-6)
    lins = [m for m in [*enc, *dec] if isinstance(m, torch.nn.Linear)]
    for (w, b), lin in zip(got["encoder"] + got["decoder"], lins):
        np.testing.assert_allclose(w, lin.weight.detach().numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(b, lin.bias.detach().numpy(), rtol=1e-4, atol=1e-6)
