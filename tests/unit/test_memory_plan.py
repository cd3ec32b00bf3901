"""The dry run's memory plan (`sidcore.run.memory_plan`): exact bytes of a small config, the real
models' parameter counts, the optimizer state against the plugins' real ``init``, and the CLI's
acceptance of the shipped 7-8B configs and refusal of one that cannot fit."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import attrs
import pytest
from click.testing import CliRunner

from sidcore.config import loading
from sidcore.model.config import PRESETS, Qwen2Config
from sidcore.plugins import load_plugins
from sidcore.run import memory_plan as mp

ROOT = Path(__file__).resolve().parents[2]
BIG = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs" / "tpu").glob("v6e-*/qwen*_*.yaml"))


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(strict=True)


@pytest.fixture(scope="module")
def registry(plugins):
    return plugins.registry


def load(registry, path=None, overrides=()):
    return loading.load_config(ROOT / path if path else None, registry, overrides=list(overrides))


@pytest.mark.parametrize("preset,card", [("qwen2_5_1_5b", 1.54e9), ("qwen2_5_7b", 7.62e9), ("qwen3_8b", 8.19e9)])
def test_parameter_counts_match_the_model_cards(preset, card):
    mc = PRESETS[preset]()
    n = sum(mp._size(s) for _, s in mp.param_leaves(mc, mc.vocab_size))
    assert abs(n - card) / card < 0.01, (preset, n)


@pytest.mark.parametrize("mc", [Qwen2Config.tiny(), Qwen2Config.tiny_qwen3(tie_word_embeddings=False)])
def test_param_leaves_are_the_models(mc):
    from flax import nnx

    from sidcore.model.hf_params import abstract_model
    from sidcore.model.sharding import path_str

    state = nnx.to_pure_dict(nnx.state(abstract_model(mc), nnx.Param))
    real = {path_str(kp): tuple(x.shape) for kp, x in jax.tree_util.tree_flatten_with_path(state)[0]}
    assert dict(mp.param_leaves(mc, mc.vocab_size)) == real


@pytest.mark.parametrize("name,opts", [
    ("adamw", {"mu_dtype": "float32"}), ("adamw", {}), ("optax_muon", {"max_dim": 100}),
    ("muon_local", {"aux_mu_dtype": "float32"}), ("muon_local", {"mu_dtype": None, "max_dim": None}),
])
def test_optimizer_state_bytes_equal_the_plugins_init(name, opts, plugins, registry):
    """The plan's per-leaf moment bytes = the bytes of the real optimizer's state (bf16 params)."""
    import jax.numpy as jnp
    import optax

    from sidcore.run.components import build_component

    mc = Qwen2Config.tiny(tie_word_embeddings=False)  # F = 128 > max_dim 100: the MLP goes to Adam
    cfg = load(registry, overrides=[f"optimizer.name={name}", *(f"optimizer.{k}={'null' if v is None else v}"
                                                                 for k, v in opts.items())])
    tx = build_component(plugins, "optimizer", cfg.optimizer, learning_rate=1e-3,
                         make_schedule=optax.constant_schedule)
    params = {}
    for path, shape in mp.param_leaves(mc, mc.vocab_size):
        node = params
        *head, last = path.split("/")
        for k in head:
            node = node.setdefault(k, {})
        node[last] = jax.ShapeDtypeStruct(shape, jnp.bfloat16)
    state = jax.eval_shape(tx.init, params)
    real = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state) if x.ndim > 0 and x.size > 3)
    planned = sum(mp._size(s) * mp.moment_bytes(name, cfg.optimizer.options, p, s, "bfloat16")
                  for p, s in mp.param_leaves(mc, mc.vocab_size))
    assert planned == real


def test_small_config_exact_bytes(registry):
    """Hand-computed: tiny (V 256, H 64, F 128, 2 layers, 4 heads / 2 KV, D 16, tied, q/k/v bias), f32,
    mesh dp 1 fsdp 2 tp 1, 2 rows x 16 tokens, AdamW, remat off, einsum attention."""
    cfg = load(registry, overrides=["model.preset=tiny", "train.per_device_train_batch_size=2", "data.max_len=16",
                                    "run_mode=train", "optimizer.name=adamw"])
    plan = mp.build_plan(cfg, {"dp": 1, "fsdp": 2, "tp": 1}, device="test", limit=None)
    got = {t.name: t.bytes for t in plan.terms}
    embed, layer_kernels = 256 * 64, 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128  # sharded over fsdp 2
    replicated = 64 + 2 * (64 + 64 + 64 + 32 + 32)  # final norm; per layer 2 norms + q/k/v bias
    elems = (embed + 2 * layer_kernels) // 2 + replicated
    assert got["params"] == elems * 4 and got["gradients"] == elems * 4  # accumulation 1: no accumulator
    assert got["optimizer"] == elems * 8  # mu and nu in float32
    per_token = 4 * 64 + (4 + 4 + 2 + 2) * 16 + 3 * 128  # residuals, q o k v, gate up product
    layer = 2 * (16 * per_token * 4 + 4 * 16 * 16 * (8 + 4))  # + scores and softmax f32, probs (f32 compute)
    assert got["activations"] == 2 * layer + 2 * 16 * 16 + 2 * 16 * 64 * 4  # + mask + final hidden
    assert got["lm head"] == 256 * (2 * 8) * 4  # logits [V, 2 rows x half of 16 tokens] f32
    assert got["layer weights"] == (2 * 64 * 6 * 16 + 3 * 64 * 128) * 4
    assert plan.largest.bytes == 256 * 16 * 4 > 2 * 4 * 16 * 16 * 4  # label logits [V, 16] f32 > scores [2, 4, 16, 16]
    cfg = load(registry, overrides=["model.preset=tiny", "train.per_device_train_batch_size=2", "data.max_len=16",
                                    "run_mode=train", "train.global_batch_size=8", "model.remat=true"])
    plan = mp.build_plan(cfg, {"dp": 1, "fsdp": 2, "tp": 1}, device="test", limit=None)
    got = {t.name: t.bytes for t in plan.terms}
    assert got["gradients"] == elems * 4 + elems * 4  # + float32 accumulator (2 micro-batches)
    assert got["activations"] == 2 * 2 * 16 * 64 * 4 + layer + 2 * 16 * 16 + 2 * 16 * 64 * 4


@pytest.mark.parametrize("text,kind", [
    ("TPU v6 lite", "v6e"), ("TPU v5 lite", "v5e"), ("TPU v4", "v4"), ("NVIDIA H100 80GB HBM3", "h100"),
    ("NVIDIA H200", "h200"), ("v6e-16", "v6e"), ("v5litepod-8", "v5e"), ("v4-8", "v4"), ("cpu", None),
])
def test_device_kinds(text, kind):
    assert mp.device_kind(text) == kind


def test_accelerator_chips():
    assert (mp.accelerator_chips("v4-8"), mp.accelerator_chips("v6e-16"), mp.accelerator_chips("v5litepod-8")) \
        == (4, 16, 8)


def test_hub_ids_name_presets():
    assert mp.hub_preset("Qwen/Qwen2.5-7B") == "qwen2_5_7b" and mp.hub_preset("Qwen/Qwen3-8B-Base") == "qwen3_8b"
    assert mp.hub_preset("Qwen/Qwen2.5-1.5B-Instruct") == "qwen2_5_1_5b" and mp.hub_preset("org/other") is None


def _dry_run(path, *extra):
    """``sid run --dry-run`` of a TPU config from the repo root (TPU configs are repo-relative)."""
    from sidcore.cli import build_cli

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return CliRunner().invoke(build_cli(), ["run", "--config", path, "--dry-run", "launcher.tpu_name=memplan",
                                                *extra])
    finally:
        os.chdir(cwd)


def test_big_configs_exist():
    assert {Path(p).parent.name for p in BIG} == {"v6e-16", "v6e-64"} and len(BIG) == 4


@pytest.mark.parametrize("path", BIG)
def test_big_configs_fit_and_keep_the_recipe(path, registry):
    cfg = load(registry, path)
    assert cfg.train.global_batch_size == 1024 and cfg.launcher.options.accelerator_type == Path(path).parent.name
    assert cfg.base_model in ("Qwen/Qwen2.5-7B", "Qwen/Qwen3-8B-Base")
    out = _dry_run(path)
    assert out.exit_code == 0, out.output
    assert "memory plan per device" in out.output and "(v6e)): fits" in out.output
    total = next(line for line in out.output.splitlines() if line.strip().startswith("total"))
    planned = float(total.split("=")[1].split("GiB")[0])
    assert planned < 0.8 * 32, total  # headroom beyond the margin
    assert f"{total.split()[1]} GiB" in (ROOT / path).read_text(), "the config's comment says what the plan printed"


def test_plan_refuses_what_cannot_fit():
    """Qwen2.5-7B with the 1.5B recipe's mesh (fsdp 4) and float32 parameters: one line, exit 1."""
    import subprocess
    import sys

    args = ["configs/tpu/v6e-16/qwen25_7b_industrial_adamw.yaml", "jax.mesh_shape=4,4,1", "jax.param_dtype=float32",
            "train.per_device_train_batch_size=4"]
    out = subprocess.run([sys.executable, "-m", "sidcore.cli", "run", "--config", args[0], "--dry-run",
                          "launcher.tpu_name=memplan", *args[1:]], capture_output=True, text=True, cwd=ROOT,
                         timeout=120, check=False)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    err = out.stderr.strip()
    assert err.startswith("Error: memory plan:") and "> 32.00 GiB" in err and "biggest term: gradients 14.19 GiB" in err
    out = _dry_run(*args, "--device-memory", "0")
    assert out.exit_code == 0 and "--device-memory 0: not checked" in out.output


def test_device_memory_flag_in_process(tmp_path):
    """A local CPU run: memory unknown (printed, not checked) unless --device-memory gives it."""
    from sidcore.cli import build_cli

    args = ["run", "--config", str(ROOT / "configs/smoke/tiny.yaml"), "--dry-run", f"output_dir={tmp_path / 'r'}"]
    out = CliRunner().invoke(build_cli(), args)
    assert out.exit_code == 0 and "memory unknown: not checked" in out.output, out.output
    out = CliRunner().invoke(build_cli(), [*args[:3], "--device-memory", "0.0001", *args[3:]])
    assert out.exit_code == 1 and "--device-memory 0.0001 GiB" in str(out.exception)


def test_plan_is_near_xlas_own_temp_bytes(registry):
    """XLA:CPU's compiled SFT step (f32, remat off, 4 rows x 256 tokens of which 128 labels, a 17.6M-param model): its temp
    buffers hold the gradients, the saved activations and the LM-head logits, which the plan adds up."""
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from sidcore.model.merge import make_merge
    from sidcore.model.modules import Qwen2ForCausalLM
    from sidcore.train.step import make_train_step

    shape = {"vocab_size": 8192, "hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4,
             "num_attention_heads": 8, "num_key_value_heads": 2}
    cfg = load(registry, overrides=["model.preset=tiny", "train.per_device_train_batch_size=4", "data.max_len=256",
                                    "run_mode=train"])
    # the vocabulary a run gets from its tokenizer: set directly (config validation refuses it as an override)
    cfg = attrs.evolve(cfg, model=attrs.evolve(cfg.model, overrides=shape))
    plan = mp.build_plan(cfg, {"dp": 1, "fsdp": 1, "tp": 1})
    got = {t.name: t.bytes for t in plan.terms}
    planned = got["gradients"] + got["activations"] + got["lm head"]
    model = nnx.eval_shape(lambda: Qwen2ForCausalLM(Qwen2Config.tiny(**shape), rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    params = nnx.to_pure_dict(state)
    tx = optax.adamw(1e-3)
    step = make_train_step(make_merge(graphdef, state), tx, real_vocab=8192)
    rows = {k: jax.ShapeDtypeStruct((1, 4, 256 if k in ("input_ids", "positions", "segment_ids") else 128),
                                    jnp.float32 if k == "label_w" else jnp.int32)
            for k in ("input_ids", "positions", "segment_ids", "label_pos", "label_ids", "label_w")}  # half labels
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, jax.eval_shape(tx.init, params), rows).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes

    assert 0.8 < planned / temp < 1.25, (planned, temp)
