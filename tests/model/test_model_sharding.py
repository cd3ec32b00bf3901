"""Mesh parsing, partition rules, and sharded == unsharded forward on 8 fake CPU devices (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from jax.sharding import PartitionSpec as P

from sidcore.errors import ConfigError
from sidcore.model.sharding import param_partition_spec, parse_mesh_shape


def test_parse_mesh_shape():
    assert parse_mesh_shape("auto", 8) == (1, 8, 1)
    assert parse_mesh_shape("1,-1,1", 8) == (1, 8, 1)
    assert parse_mesh_shape("2,4,1", 8) == (2, 4, 1)
    assert parse_mesh_shape("dp:2,fsdp:-1,tp:2", 8) == (2, 2, 2)
    assert parse_mesh_shape("!4,1,1", 4) == (4, 1, 1)
    for bad in ("2,2,1", "-1,-1,1", "a,b,c", "dp:2,pp:4", "1,2"):
        with pytest.raises(ConfigError, match="mesh_shape"):
            parse_mesh_shape(bad, 8)


@pytest.mark.parametrize(
    "path, shape, spec",
    [
        ("model/layers/0/self_attn/q_proj/kernel", (64, 64), P("fsdp", "tp")),
        ("model/layers/3/self_attn/k_proj/kernel", (64, 32), P("fsdp", "tp")),
        ("model/layers/0/self_attn/o_proj/kernel", (64, 64), P("tp", "fsdp")),
        ("model/layers/0/mlp/gate_proj/kernel", (64, 128), P("fsdp", "tp")),
        ("model/layers/0/mlp/up_proj/kernel", (64, 128), P("fsdp", "tp")),
        ("model/layers/0/mlp/down_proj/kernel", (128, 64), P("tp", "fsdp")),
        ("model/embed_tokens/embedding", (128, 64), P("fsdp", "tp")),
        ("lm_head/kernel", (64, 128), P("fsdp", "tp")),
        ("model/layers/0/self_attn/q_proj/bias", (64,), P()),
        ("model/norm/scale", (64,), P()),
        ("opt_state/0/mu/model/layers/0/mlp/down_proj/kernel", (128, 64), P("tp", "fsdp")),  # optimizer state
        ("opt_state/0/count", (), P()),
    ],
)
def test_partition_rules(path, shape, spec):
    assert param_partition_spec(path, shape) == spec


CHILD = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec as P
    from sidcore.model import Qwen2Config, Qwen2ForCausalLM, make_mesh, param_partition_spec, shard_params
    from sidcore.model.sharding import path_str

    assert jax.device_count() == 8, jax.devices()
    EXPECT = {
        "self_attn/q_proj/kernel": ("fsdp", "tp"), "self_attn/k_proj/kernel": ("fsdp", "tp"),
        "self_attn/v_proj/kernel": ("fsdp", "tp"), "self_attn/o_proj/kernel": ("tp", "fsdp"),
        "mlp/gate_proj/kernel": ("fsdp", "tp"), "mlp/up_proj/kernel": ("fsdp", "tp"),
        "mlp/down_proj/kernel": ("tp", "fsdp"), "embed_tokens/embedding": ("fsdp", "tp"),
        "lm_head/kernel": ("fsdp", "tp"),
    }
    report = {"max_diff": {}, "bad_specs": [], "n_checked": 0}
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(1, 128, (8, 12)), jnp.int32)
    mask = np.ones((8, 12), np.int32); mask[::2, :4] = 0
    mask = jnp.asarray(mask)
    for tied in (True, False):
        model = Qwen2ForCausalLM(Qwen2Config.tiny(vocab_size=128, tie_word_embeddings=tied), rngs=nnx.Rngs(0))
        ref = np.asarray(model(ids, attention_mask=mask))
        graphdef, state = nnx.split(model)
        for shape in ("2,4,1", "1,-1,1", "1,4,2"):
            mesh = make_mesh(shape)
            sharded = shard_params(state, mesh)
            for kp, leaf in jax.tree_util.tree_flatten_with_path(sharded)[0]:
                p = path_str(kp)
                want = next((v for k, v in EXPECT.items() if p.endswith(k)), ())
                report["n_checked"] += 1
                if leaf.sharding.spec != P(*want):
                    report["bad_specs"].append([shape, p, str(leaf.sharding.spec)])
            data = NamedSharding(mesh, P(("dp", "fsdp")))
            fwd = jax.jit(lambda s, i, m: nnx.merge(graphdef, s)(i, attention_mask=m))
            got = np.asarray(fwd(sharded, jax.device_put(ids, data), jax.device_put(mask, data)))
            real = np.asarray(mask).astype(bool)
            report["max_diff"][f"{tied}-{shape}"] = float(np.abs(got[real] - ref[real]).max())
    mesh = make_mesh("2,4,1")
    report["fallback"] = str(param_partition_spec("model/embed_tokens/embedding", (130, 64), mesh=mesh))
    report["auto"] = dict(make_mesh("auto").shape)
    print("REPORT" + json.dumps(report))
    """
)


def test_sharded_forward_equals_unsharded_on_8_cpu_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT"))
    report = json.loads(line[len("REPORT"):])
    assert report["bad_specs"] == []
    assert report["n_checked"] > 0
    assert len(report["max_diff"]) == 6
    for name, diff in report["max_diff"].items():
        assert diff <= 1e-5, name
    assert report["fallback"] == str(P(None, "tp"))
    assert report["auto"] == {"dp": 1, "fsdp": 8, "tp": 1}


def test_three_axis_mesh_is_refused_on_cpu():
    """dp, fsdp, tp all > 1 gave wrong numbers on XLA:CPU (docs/model.md): refused, not silently wrong."""
    import pytest

    from sidcore.errors import ConfigError
    from sidcore.model import make_mesh

    class Dev:  # stand-ins: make_mesh only reads platform / process_index / id before refusing
        platform, process_index = "cpu", 0

        def __init__(self, i):
            self.id = i

    with pytest.raises(ConfigError, match="dp, fsdp and tp all > 1 gives wrong numbers on the CPU backend"):
        make_mesh("2,2,2", devices=[Dev(i) for i in range(8)])
