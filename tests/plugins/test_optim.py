"""Tests of the built-in optimizer plugin `sid_optim` (adamw, optax_muon, muon_local).

Outside references: `optax.contrib.muon` (0.2.8) for update-for-update parity, numpy SVD for the
Newton–Schulz orthogonality band, a numpy re-derivation of the reference local Muon step (§5.3),
and pure `optax.adamw` for the auxiliary-Adam routing. CPU only, ~40 s of CPU time (mostly XLA compiles).
"""

from __future__ import annotations

import subprocess
import sys

import attrs
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest

import sid_optim
from sid_optim import common
from sid_optim.config import AdamWConfig, MuonLocalConfig, OptaxMuonConfig
from sid_optim.muon_local import MuonLocalState, newton_schulz, scale_by_muon_local
from sidcore.plugins import load_plugins
from sidcore.testing.optim import check_optimizer, model_like_params

A, B, C = 3.4445, -4.7750, 2.0315


@pytest.fixture(scope="module")
def registry():
    plugins = load_plugins(entry_points=False, extra=[("optim", sid_optim)])
    assert plugins.record("optim").status == "ok"
    return plugins.registry


def build(registry, name, *, learning_rate=0.02, make_schedule=optax.constant_schedule, **options):
    spec = registry.get("optimizer", name)
    return spec.build(spec.config(**options), learning_rate=learning_rate, make_schedule=make_schedule)


# --------------------------------------------------------------------------------------------
# Conformance and registration
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, options",
    [("adamw", {}), ("optax_muon", {"aux_learning_rate": 0.02}), ("muon_local", {"aux_learning_rate": 0.02})],
)
def test_conformance(registry, name, options):
    result = check_optimizer(lambda: build(registry, name, **options))
    assert result["final_loss"] < 0.5 * result["initial_loss"]


def test_conformance_suite_can_fail():
    with pytest.raises(AssertionError, match="did not decrease"):
        check_optimizer(lambda: optax.sgd(0.0))
    with pytest.raises(AssertionError, match="dtype"):  # float32 mu on bfloat16 params, unwrapped
        check_optimizer(lambda: optax.adamw(0.02, mu_dtype=jnp.float32))


def test_registered_components_and_light_listing(registry):
    assert registry.names("optimizer") == ["adamw", "muon_local", "optax_muon"]
    assert registry.get("optimizer", "optax_muon").config is OptaxMuonConfig
    code = "import sys, sid_optim; sid_optim.config.MuonLocalConfig(); assert 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_config_validation():
    with pytest.raises(ValueError, match="shape_scaling"):
        MuonLocalConfig(shape_scaling="width")
    with pytest.raises(ValueError, match="mu_dtype"):
        AdamWConfig(mu_dtype="float16")
    with pytest.raises(ValueError, match="ns_coeffs"):
        OptaxMuonConfig(ns_coeffs=(1.0, 2.0))
    with pytest.raises(ValueError, match="momentum"):
        MuonLocalConfig(momentum=1.0)
    with pytest.raises(ValueError, match="max_dim"):
        OptaxMuonConfig(max_dim=0)
    assert MuonLocalConfig(ns_coeffs=[1, 2, 3]).ns_coeffs == (1.0, 2.0, 3.0)
    for cls in (AdamWConfig, OptaxMuonConfig, MuonLocalConfig):
        assert all(f.metadata.get("help") for f in attrs.fields(cls)), cls


def test_configs_structure_from_yaml_values():
    from sidcore.config.loading import structure
    from sidcore.errors import ConfigError

    cfg = structure(MuonLocalConfig, {"ns_coeffs": [3, -4, 2], "max_dim": None, "aux_mu_dtype": "float32",
                                      "momentum_form": "ema"}, "optimizer")
    assert cfg.ns_coeffs == (3.0, -4.0, 2.0) and cfg.max_dim is None and cfg.momentum_form == "ema"
    with pytest.raises(ConfigError, match="optimizer.adam_b3"):
        structure(OptaxMuonConfig, {"adam_b3": 0.9}, "optimizer")
    with pytest.raises(ConfigError, match="ns_dtype"):
        structure(MuonLocalConfig, {"ns_dtype": "float16"}, "optimizer")


@pytest.mark.parametrize("name", ["adamw", "optax_muon", "muon_local"])
def test_schedules_come_from_make_schedule(registry, name):
    peaks = []

    def make_schedule(peak):
        peaks.append(peak)
        return lambda count: peak * (count + 1)  # step 0 -> peak, step 1 -> 2 * peak

    options = {} if name == "adamw" else {"aux_learning_rate": 5e-4}
    tx = build(registry, name, learning_rate=3e-3, make_schedule=make_schedule, **options)
    assert peaks == ([3e-3] if name == "adamw" else [3e-3, 5e-4])
    params = {"w": jnp.ones((4, 4)), "b": jnp.ones((4,))}
    grads = {"w": jnp.eye(4), "b": jnp.ones((4,))}
    state = tx.init(params)
    update = jax.jit(tx.update)
    u1, state = update(grads, state, params)
    u2, _ = update(grads, state, params)
    np.testing.assert_allclose(u2["w"], 2 * u1["w"], rtol=1e-5)  # momentum unchanged for grads = const


# --------------------------------------------------------------------------------------------
# Parity with optax.contrib.muon
# --------------------------------------------------------------------------------------------


def mixed_tree(seed=0):
    shapes = {
        "model": {
            "embed_tokens": {"embedding": (20, 6)},
            "layers": {0: {"q_proj": {"kernel": (6, 12), "bias": (12,)},  # wide: width factor sqrt(2)
                           "down_proj": {"kernel": (12, 6)},  # tall: NS transposes
                           "o_proj": {"kernel": (6, 6)}}},
        },
        "lm_head": {"kernel": (6, 20)},
    }
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, s) for k, s in zip(keys, leaves)])


def run_steps(tx, params, steps=5, seed=1):
    state = tx.init(params)
    out = []
    for i in range(steps):
        grads = mixed_tree(seed + i)
        updates, state = jax.jit(tx.update)(grads, state, params)
        params = optax.apply_updates(params, updates)
        out.append(updates)
    return out


PARITY = dict(momentum=0.9, nesterov=True, ns_steps=5, eps=1e-7, weight_decay=0.1, max_dim=None)


@pytest.mark.parametrize("shape_scaling", ["optax_0_2_6", "moonshot", "none"])
def test_muon_local_matches_optax_muon(registry, shape_scaling):
    params = mixed_tree()
    ours = build(registry, "muon_local", learning_rate=0.05, aux_learning_rate=0.01, momentum_form="ema",
                 ns_dtype="float32", shape_scaling=shape_scaling, consistent_rms=0.3, mu_dtype="float32",
                 aux_b1=0.8, aux_b2=0.99, aux_eps=1e-7, aux_weight_decay=0.02, aux_mu_dtype="float32",
                 aux_nesterov=True, **PARITY)
    theirs = build(registry, "optax_muon", learning_rate=0.05, aux_learning_rate=0.01, mu_dtype="float32",
                   shape_scaling=shape_scaling, consistent_rms=0.3, adam_b1=0.8, adam_b2=0.99,
                   adam_weight_decay=0.02, **PARITY)
    references = [theirs]
    if shape_scaling == "optax_0_2_6":  # optax called directly, with an explicit dim-numbers pytree
        spec = optax.contrib.MuonDimensionNumbers()
        dims = jax.tree.map(lambda x: spec if x.ndim == 2 else None, params)
        dims["model"]["embed_tokens"]["embedding"] = None
        dims["lm_head"]["kernel"] = None
        references.append(optax.contrib.muon(
            0.05, beta=0.9, eps=1e-7, weight_decay=0.1, mu_dtype=jnp.float32, nesterov=True,
            adam_b1=0.8, adam_b2=0.99, adam_weight_decay=0.02, adam_learning_rate=0.01,
            muon_weight_dimension_numbers=dims))
    got = run_steps(ours, params)
    for ref in references:
        for step, (a, b) in enumerate(zip(got, run_steps(ref, params))):
            for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6,
                                           err_msg=f"step {step} {jax.tree_util.keystr(path)}")


def test_optax_muon_shape_scaling_options(registry):
    params = {"wide": jnp.ones((6, 12)), "tall": jnp.ones((12, 6))}  # [in, out]
    layer = mixed_tree(3)["model"]["layers"][0]
    grads = {"wide": layer["q_proj"]["kernel"], "tall": layer["down_proj"]["kernel"]}
    updates = {}
    for scaling in ("optax_0_2_6", "none", "moonshot"):
        tx = build(registry, "optax_muon", learning_rate=1.0, shape_scaling=scaling, max_dim=None)
        updates[scaling], _ = jax.jit(tx.update)(grads, tx.init(params), params)
    none = updates["none"]
    np.testing.assert_allclose(updates["optax_0_2_6"]["wide"], np.sqrt(2.0) * none["wide"], rtol=1e-5)
    np.testing.assert_allclose(updates["moonshot"]["wide"], 0.2 * np.sqrt(12.0) * none["wide"], rtol=1e-5)
    np.testing.assert_allclose(updates["optax_0_2_6"]["tall"], none["tall"], rtol=1e-6)
    np.testing.assert_allclose(updates["moonshot"]["tall"], 0.2 * np.sqrt(12.0) * none["tall"], rtol=1e-5)


# --------------------------------------------------------------------------------------------
# Newton–Schulz
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 32), (32, 64)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_newton_schulz_near_orthogonal(shape, dtype):
    g = np.asarray(jax.random.normal(jax.random.key(7), shape), np.float64)
    out = np.asarray(newton_schulz(jnp.asarray(g, jnp.float32), steps=5, dtype=dtype), np.float64)
    assert out.shape == shape
    sv = np.linalg.svd(out, compute_uv=False)
    # The quintic's coefficients trade exactness for speed: singular values oscillate around 1.
    assert 0.6 <= sv.min() and sv.max() <= 1.2, (sv.min(), sv.max())
    u, _, vt = np.linalg.svd(g, full_matrices=False)
    polar = u @ vt  # the exact orthogonal factor U V^T
    corr = np.sum(out * polar) / (np.linalg.norm(out) * np.linalg.norm(polar))
    assert corr > 0.97, corr  # = mean(s) / rms(s) for singular values s of the output


# --------------------------------------------------------------------------------------------
# Routing: embeddings, lm_head and non-2-D leaves go to Adam in both Muon variants
# --------------------------------------------------------------------------------------------


def muon_paths(state):
    mu = state.inner_states["muon"].inner_state[0].mu
    return sorted(common.path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(mu)[0])


@pytest.mark.parametrize("name", ["optax_muon", "muon_local"])
def test_routing_state_and_aux_equals_adamw(registry, name):
    params = model_like_params(0)
    lr, aux = 0.05, 0.01
    if name == "optax_muon":
        tx = build(registry, name, learning_rate=lr, aux_learning_rate=aux, eps=1e-7, mu_dtype="float32")
        adamw = optax.adamw(aux, eps=1e-7, weight_decay=0.0, mu_dtype=jnp.float32, nesterov=True)
    else:
        tx = build(registry, name, learning_rate=lr, aux_learning_rate=aux, aux_weight_decay=0.03)
        adamw = optax.adamw(aux, eps=1e-8, weight_decay=0.03)
    state = tx.init(params)
    assert muon_paths(state) == ["model/layers/0/mlp/down_proj/kernel",
                                 "model/layers/0/self_attn/q_proj/kernel"]
    adam_state = adamw.init(params)
    update, adam_update = jax.jit(tx.update), jax.jit(adamw.update)
    for i in range(3):
        grads = jax.tree.map(lambda p, k=i: jnp.sin(3.0 * p + k), params)
        updates, state = update(grads, state, params)
        expected, adam_state = adam_update(grads, adam_state, params)
        for path, u in jax.tree_util.tree_flatten_with_path(updates)[0]:
            name_ = common.path_name(path)
            e = dict((common.path_name(p), x) for p, x in jax.tree_util.tree_flatten_with_path(expected)[0])
            if "proj/kernel" in name_:
                assert not np.allclose(u, e[name_], rtol=1e-3)  # Muon, not Adam
            else:
                np.testing.assert_allclose(u, e[name_], rtol=1e-6, atol=1e-8, err_msg=name_)
        params = optax.apply_updates(params, updates)


def test_route_leaf_rules():
    labels = common.param_labels(
        {"model": {"embed_tokens": {"embedding": jnp.zeros((50, 4))},
                   "layers": {0: {"mlp": {"up_proj": {"kernel": jnp.zeros((4, 20))}},
                                  "norm": {"scale": jnp.zeros((4,))}},
                              1: {"stacked": {"kernel": jnp.zeros((2, 4, 4))}}}},
         "lm_head": {"kernel": jnp.zeros((4, 50))}},
        max_dim=16,
    )
    assert labels == {"model": {"embed_tokens": {"embedding": "adam"},
                                "layers": {0: {"mlp": {"up_proj": {"kernel": "adam"}},  # 20 > max_dim
                                               "norm": {"scale": "adam"}},
                                           1: {"stacked": {"kernel": "adam"}}}},
                      "lm_head": {"kernel": "adam"}}
    assert common.route_leaf((jax.tree_util.DictKey("q"),), jnp.zeros((4, 20)), max_dim=None) == "muon"


def test_nnx_optimizer_routes_state_paths(registry):
    from flax import nnx

    class Tiny(nnx.Module):
        def __init__(self, rngs):
            self.embed_tokens = nnx.Embed(12, 4, rngs=rngs)
            self.proj = nnx.Linear(4, 6, rngs=rngs)
            self.lm_head = nnx.Linear(6, 12, use_bias=False, rngs=rngs)

        def __call__(self, ids):
            return self.lm_head(self.proj(self.embed_tokens(ids)))

    @nnx.jit
    def step(model, opt):
        grads = nnx.grad(lambda m: jnp.mean(m(jnp.arange(5)) ** 2))(model)
        opt.update(model, grads)

    for name in ("optax_muon", "muon_local"):
        model = Tiny(nnx.Rngs(0))
        opt = nnx.Optimizer(model, build(registry, name, aux_learning_rate=0.01), wrt=nnx.Param)
        assert [p.split("/")[0] for p in muon_paths(opt.opt_state)] == ["proj"], name
        before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
        step(model, opt)
        after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
        assert not np.allclose(before["proj"]["kernel"], after["proj"]["kernel"])
        assert not np.allclose(before["embed_tokens"]["embedding"], after["embed_tokens"]["embedding"])


# --------------------------------------------------------------------------------------------
# Reference local Muon (reference-spec §5.3), re-derived in numpy
# --------------------------------------------------------------------------------------------


def reference_local_step(g, m0, *, mu=0.95, eps=1e-7):
    """Sum momentum, Nesterov, Newton–Schulz, no shape scaling; float64 throughout."""
    m1 = mu * m0 + g
    x = g + mu * m1
    x = x / (np.sqrt(np.sum(x * x)) + eps)
    x = x.T  # 4x3 has more rows than columns
    for _ in range(5):
        gram = x @ x.T
        x = A * x + (B * gram + C * gram @ gram) @ x
    return x.T, m1


def test_reference_local_muon_step():
    rng = np.random.default_rng(0)
    g, m0 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    expected, m1 = reference_local_step(g, m0)
    state = MuonLocalState(count=jnp.zeros([], jnp.int32), mu={"w": jnp.asarray(m0, jnp.float32)})
    grads = {"w": jnp.asarray(g, jnp.float32)}
    out = {}
    for ns_dtype in (jnp.float32, jnp.bfloat16):
        tx = scale_by_muon_local(momentum=0.95, momentum_form="sum", nesterov=True, ns_dtype=ns_dtype,
                                 eps=1e-7, shape_scaling="none")
        update, new_state = jax.jit(tx.update)(grads, state)
        assert update["w"].dtype == jnp.float32  # the gradient's dtype
        np.testing.assert_allclose(new_state.mu["w"], m1, rtol=1e-6, atol=1e-6)
        assert int(new_state.count) == 1
        out[ns_dtype] = np.asarray(update["w"], np.float64)
    np.testing.assert_allclose(out[jnp.float32], expected, rtol=1e-5, atol=1e-6)
    # bfloat16 iteration: every value is a bfloat16 number, and bf16 rounding (amplified by the
    # high-slope quintic) keeps it only roughly on the float64 result.
    low = out[jnp.bfloat16]
    np.testing.assert_array_equal(low.astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float64), low)
    assert not np.array_equal(low, out[jnp.float32])
    assert np.linalg.norm(low - expected) < 0.15 * np.linalg.norm(expected)
    # A different momentum form (optax EMA + bias correction) would give another direction.
    ema = scale_by_muon_local(momentum=0.95, momentum_form="ema", ns_dtype=jnp.float32)
    ema_update, _ = ema.update(grads, state._replace(count=jnp.ones([], jnp.int32)))
    assert not np.allclose(ema_update["w"], expected, atol=0.05)


def test_muon_local_default_step_with_weight_decay_and_lr(registry):
    rng = np.random.default_rng(1)
    p, g = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    tx = build(registry, "muon_local", learning_rate=0.01, weight_decay=0.1, ns_dtype="float32")
    assert MuonLocalConfig().ns_dtype == "bfloat16" and MuonLocalConfig().momentum_form == "sum"
    params = {"layers": {"w": jnp.asarray(p, jnp.float32)}}
    updates, _ = tx.update({"layers": {"w": jnp.asarray(g, jnp.float32)}}, tx.init(params), params)
    ortho, _ = reference_local_step(g, np.zeros((4, 3)))  # fresh state: g_eff = 1.95 g
    np.testing.assert_allclose(updates["layers"]["w"], -0.01 * (ortho + 0.1 * p), rtol=1e-5, atol=1e-7)
