"""The per-device memory plan of an SFT run, printed by ``sid run --dry-run`` (docs/memory.md).

Computed from shapes alone (no weights, no data, no compilation): the model's parameter leaves
(`param_leaves`, the same paths and shapes as `Qwen2ForCausalLM`), each divided by the mesh axes the
sharding rules give it (`sidcore.model.sharding`: a dimension its axis does not divide stays whole,
norm scales and biases are replicated); gradients in the parameter dtype plus a float32 accumulator
when a step accumulates micro-batches (`sidcore.train.step`); the optimizer moments the built-in
optimizers keep (read from ``optimizer.name`` and its options, never by importing the plugin); and
the activations of one micro-batch of ``per_device_train_batch_size`` rows of ``data.max_len``
tokens (`activation_terms`). The total plus a margin of `MARGIN` of the device memory must fit the
device memory (`DEVICE_MEMORY`), else `check` refuses the run with one line naming the biggest term.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import attrs

from sidcore.config.schema import RunConfig
from sidcore.errors import ConfigError
from sidcore.model.config import PRESETS, Qwen2Config, from_hf_config
from sidcore.run.memory_activations import _BYTES, GIB, Term, activation_terms, gib

MIB = 1024 ** 2
#: Share of the device memory kept free for XLA's scratch buffers, fragmentation and the program.
MARGIN = 0.10
#: Memory of one device by kind (bytes). TPU: HBM per chip (cloud.google.com/tpu/docs/v4, v5e, v5p,
#: v6e); GPU: what nvidia-smi reports as total on an H100 80GB HBM3 / H200.
DEVICE_MEMORY = {
    "v4": 32 * GIB, "v5e": 16 * GIB, "v5p": 95 * GIB, "v6e": 32 * GIB,
    "h100": 81559 * MIB, "h200": 143771 * MIB,
}
_GPU_KINDS = ("h100", "h200")


# ----------------------------------------------------------------------------- device memory
def device_kind(text: str) -> str | None:
    """Our kind name for a TPU accelerator type (``v6e-16``, ``v5litepod-8``) or a jax `device_kind`
    (``TPU v6 lite``, ``TPU v5 lite``, ``TPU v4``, ``NVIDIA H100 80GB HBM3``); None when unknown."""
    t = text.strip().lower()
    for pattern, kind in ((r"^v6e\b|tpu v6", "v6e"), (r"^v5litepod|^v5e|tpu v5 ?lite|tpu v5e", "v5e"),
                          (r"^v5p|tpu v5p|^tpu v5$", "v5p"), (r"^v4\b|tpu v4", "v4"), (r"h100", "h100"),
                          (r"h200", "h200")):
        if re.search(pattern, t):
            return kind
    return None


def accelerator_chips(accelerator_type: str) -> int | None:
    """JAX devices of a TPU slice: v4 / v5p count TensorCores (2 per chip), v5e / v6e count chips."""
    m = re.match(r"^(v\w+?)-(\d+)$", accelerator_type.strip())
    if not m:
        return None
    n = int(m.group(2))
    return n // 2 if device_kind(accelerator_type) in ("v4", "v5p") else n


def device_name(cfg: RunConfig, *, in_process: bool) -> tuple[str | None, str]:
    """(accelerator type or jax device kind, where it came from); None when neither is known."""
    accel = getattr(cfg.launcher.options, "accelerator_type", None)
    if accel:
        return accel, f"{cfg.launcher.name} accelerator_type {accel}"
    if in_process:
        import jax

        kind = jax.devices()[0].device_kind
        return kind, f"device {kind!r}"
    return None, f"launcher {cfg.launcher.name} (no accelerator type)"


def device_limit(cfg: RunConfig, *, in_process: bool, override_gib: float | None) -> tuple[str, int | None]:
    """(description, bytes) of one device's memory: ``--device-memory``, else the launcher's
    ``accelerator_type``, else (in process) ``jax.devices()[0].device_kind``. GPU memory is scaled by
    ``XLA_PYTHON_CLIENT_MEM_FRACTION`` (JAX preallocates 0.75 of it by default)."""
    if override_gib is not None:
        return f"--device-memory {override_gib:g} GiB", int(override_gib * GIB)
    accel, source = device_name(cfg, in_process=in_process)
    kind = device_kind(accel) if accel else None
    if accel is None:
        return source, None
    if kind is None:
        return f"{source}: memory unknown", None
    limit = DEVICE_MEMORY[kind]
    if kind in _GPU_KINDS:
        frac = float(os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.75"))
        return f"{source} ({kind}, {frac:g} of {gib(limit)} preallocated)", int(limit * frac)
    return f"{source} ({kind})", limit


def plan_mesh(cfg: RunConfig, mesh: Any) -> dict[str, int] | None:
    """The mesh axis sizes: the pre-flight mesh, else one derived from the launcher's TPU type."""
    if mesh is not None:
        return dict(mesh.shape)
    from sidcore.model.sharding import parse_mesh_shape

    n = accelerator_chips(getattr(cfg.launcher.options, "accelerator_type", "") or "")
    shape = cfg.jax.mesh_shape.strip().lstrip("!")
    one_host = n is not None and n <= (4 if device_kind(cfg.launcher.options.accelerator_type) in ("v4", "v5p") else 8)
    if n is None or (shape in ("", "auto") and not one_host):
        return None  # "auto" over several hosts depends on the host count: give jax.mesh_shape
    return dict(zip(("dp", "fsdp", "tp"), parse_mesh_shape(shape, n)))


# ----------------------------------------------------------------------------- model shape
def hub_preset(model_id: str) -> str | None:
    """The preset a hub id names: ``Qwen/Qwen2.5-7B(-Instruct)`` -> ``qwen2_5_7b``."""
    name = model_id.rsplit("/", 1)[-1].lower()
    name = re.sub(r"-(instruct|base)$", "", name)
    key = re.sub(r"[.\-]", "_", name)
    return key if key in PRESETS else None


def model_shape(cfg: RunConfig) -> tuple[Qwen2Config, str]:
    """The architecture the run trains and where it came from (config.json, preset, hub id)."""
    overrides = dict(cfg.model.overrides)
    if cfg.base_model:
        folder = Path(cfg.base_model).expanduser()
        if (folder / "config.json").is_file():
            mc = from_hf_config(json.loads((folder / "config.json").read_text()))
            return mc.replace(**overrides), f"{folder / 'config.json'}"
        preset = hub_preset(cfg.base_model)
        if preset is None:
            raise ConfigError(f"memory plan: base_model={cfg.base_model} is neither a local folder with config.json "
                              f"nor a hub id naming a preset ({', '.join(PRESETS)}); pass model.preset")
        return PRESETS[preset](**overrides), f"preset {preset} (from base_model {cfg.base_model})"
    if cfg.model.preset in PRESETS:
        return PRESETS[cfg.model.preset](**overrides), f"preset {cfg.model.preset}"
    raise ConfigError(f"memory plan: model.preset {cfg.model.preset!r} is unknown; available: {', '.join(PRESETS)}")


def param_leaves(mc: Qwen2Config, vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    """(path, shape) of every parameter of `Qwen2ForCausalLM` with a vocabulary of `vocab` rows."""
    H, F, D = mc.hidden_size, mc.intermediate_size, mc.resolved_head_dim
    q, kv = mc.num_attention_heads * D, mc.num_key_value_heads * D
    out: list[tuple[str, tuple[int, ...]]] = [("model/embed_tokens/embedding", (vocab, H)), ("model/norm/scale", (H,))]
    if not mc.tie_word_embeddings:
        out.append(("lm_head/kernel", (H, vocab)))
    for i in range(mc.num_hidden_layers):
        p = f"model/layers/{i}"
        out += [(f"{p}/input_layernorm/scale", (H,)), (f"{p}/post_attention_layernorm/scale", (H,)),
                (f"{p}/self_attn/q_proj/kernel", (H, q)), (f"{p}/self_attn/k_proj/kernel", (H, kv)),
                (f"{p}/self_attn/v_proj/kernel", (H, kv)), (f"{p}/self_attn/o_proj/kernel", (q, H)),
                (f"{p}/mlp/gate_proj/kernel", (H, F)), (f"{p}/mlp/up_proj/kernel", (H, F)),
                (f"{p}/mlp/down_proj/kernel", (F, H))]
        if mc.qkv_bias:
            out += [(f"{p}/self_attn/q_proj/bias", (q,)), (f"{p}/self_attn/k_proj/bias", (kv,)),
                    (f"{p}/self_attn/v_proj/bias", (kv,))]
        if mc.qk_norm:
            out += [(f"{p}/self_attn/q_norm/scale", (D,)), (f"{p}/self_attn/k_norm/scale", (D,))]
    return out


def shards(path: str, shape: tuple[int, ...], mesh: dict[str, int]) -> int:
    """How many ways the sharding rules split this leaf on `mesh` (1 = replicated)."""
    from sidcore.model.sharding import param_partition_spec

    spec = param_partition_spec(path, shape, mesh=_MeshShape(mesh))
    n = 1
    for ax in spec:
        for a in (ax if isinstance(ax, tuple) else (ax,)):
            n *= mesh.get(a, 1) if a else 1
    return n


@attrs.frozen
class _MeshShape:
    shape: dict[str, int]


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# ----------------------------------------------------------------------------- optimizer state
def _routes_to_muon(path: str, shape: tuple[int, ...], max_dim: int | None) -> bool:
    """The built-in Muon optimizers' rule (plugins/sid_optim/common.py: `route_leaf`)."""
    if "embed" in path.lower() or "lm_head" in path.lower() or len(shape) != 2:
        return False
    return max_dim is None or max(shape) <= max_dim


def moment_bytes(name: str, options: Any, path: str, shape: tuple[int, ...], pd: str) -> int:
    """Bytes per element of the optimizer state one leaf carries (unsharded count is the caller's)."""
    opt = lambda key, default=None: getattr(options, key, default)
    p = _BYTES[pd]
    if name == "adamw":  # mu in mu_dtype (or the param dtype), nu in the param dtype
        return _BYTES.get(opt("mu_dtype") or pd) + p
    if name in ("optax_muon", "muon_local"):
        mu = _BYTES.get(opt("mu_dtype") or pd)
        if _routes_to_muon(path, shape, opt("max_dim", 10000)):
            return mu  # Muon momentum only
        aux_mu = mu if name == "optax_muon" else _BYTES.get(opt("aux_mu_dtype") or pd)
        return aux_mu + p  # the aux Adam's mu and nu
    return 2 * p  # unknown optimizer: assumed Adam-like (said in the plan)


def optimizer_note(name: str, options: Any, pd: str) -> str:
    opt = lambda key: getattr(options, key, None)
    if name == "adamw":
        return f"adamw: mu {opt('mu_dtype') or pd}, nu {pd}"
    if name == "optax_muon":
        return f"optax_muon: Muon mu {opt('mu_dtype') or pd}; aux Adam mu {opt('mu_dtype') or pd} + nu {pd}"
    if name == "muon_local":
        return f"muon_local: Muon mu {opt('mu_dtype') or pd}; aux AdamW mu {opt('aux_mu_dtype') or pd} + nu {pd}"
    return f"{name}: unknown to the plan, assumed 2 moments in {pd}"


# ----------------------------------------------------------------------------- the plan
@attrs.frozen
class MemoryPlan:
    terms: tuple[Term, ...]
    largest: Term  # the largest single activation tensor
    header: str
    device: str
    limit: int | None

    @property
    def total(self) -> int:
        return sum(t.bytes for t in self.terms)

    @property
    def margin(self) -> int:
        return int(MARGIN * self.limit) if self.limit else 0

    @property
    def fits(self) -> bool:
        return self.limit is None or self.total + self.margin <= self.limit

    def format(self) -> str:
        lines = [f"memory plan per device: {self.header}"]
        lines += [f"  {t.name:<13} {gib(t.bytes):>10}  {t.detail}" for t in self.terms]
        lines.append(f"  {'largest':<13} {gib(self.largest.bytes):>10}  {self.largest.detail}")
        if self.limit is None:
            hint = "" if self.device.startswith("--device-memory") else " (pass --device-memory GiB)"
            lines.append(f"  {'total':<13} {gib(self.total):>10}  {self.device}: not checked{hint}")
        else:
            verdict = "fits" if self.fits else "DOES NOT FIT"
            lines.append(f"  {'total':<13} {gib(self.total):>10}  + margin {MARGIN:.0%} {gib(self.margin)} = "
                         f"{gib(self.total + self.margin)} of {gib(self.limit)} ({self.device}): {verdict}")
        return "\n".join(lines)

    def refusal(self) -> str:
        big = max(self.terms, key=lambda t: t.bytes)
        return (f"memory plan: {gib(self.total)} per device + {MARGIN:.0%} margin > {gib(self.limit or 0)} "
                f"({self.device}); biggest term: {big.name} {gib(big.bytes)} ({big.detail})")


def build_plan(cfg: RunConfig, mesh: dict[str, int], *, device: str = "", limit: int | None = None,
               gpu: bool = False) -> MemoryPlan:
    """The memory plan of an SFT run of `cfg` on `mesh` (axis sizes) against `limit` bytes; `gpu`: an
    NVIDIA GPU runs it (``model.attention: auto`` then picks cuDNN flash attention)."""
    from sidcore.train.plan import batch_math

    mc, source = model_shape(cfg)
    multiple = cfg.model.vocab_pad_multiple or mesh["fsdp"] * mesh["tp"]
    vocab = -(-mc.vocab_size // multiple) * multiple
    mc = mc.replace(vocab_size=vocab)
    pd = cfg.jax.param_dtype
    batch = batch_math(cfg.train, _MeshShape(mesh))
    n_params = params = grads = accum = state = 0
    for path, shape in param_leaves(mc, vocab):
        n = _size(shape)
        local = -(-n // shards(path, shape, mesh))
        n_params += n
        params += local * _BYTES[pd]
        accum += local * 4 if batch.accumulation > 1 else 0
        state += local * moment_bytes(cfg.optimizer.name, cfg.optimizer.options, path, shape, pd)
    grads = params + accum
    acts, largest = activation_terms(mc, cfg, mesh, gpu=gpu)
    grad_note = f"{pd}" + (f" + float32 accumulator ({batch.accumulation} micro-batches)" if accum else "")
    terms = (
        Term("params", params, f"{n_params / 1e9:.3f} B params in {pd} ({source}, vocab {vocab})"),
        Term("gradients", grads, grad_note),
        Term("optimizer", state, optimizer_note(cfg.optimizer.name, cfg.optimizer.options, pd)),
        *acts,
    )
    header = (f"mesh dp={mesh['dp']} fsdp={mesh['fsdp']} tp={mesh['tp']}; micro-batch "
              f"{cfg.train.per_device_train_batch_size} rows x {cfg.data.max_len} tokens per replica; "
              f"remat {'on' if cfg.model.remat else 'off'}; compute {cfg.jax.compute_dtype}")
    return MemoryPlan(terms=terms, largest=largest, header=header, device=device, limit=limit)


def check(cfg: RunConfig, mesh: Any, *, in_process: bool, device_memory_gib: float | None = None) -> str:
    """The printed plan of a training run; raises `ConfigError` (one line) when it cannot fit.

    ``device_memory_gib=0`` skips the fit check (the plan is still printed).
    """
    if cfg.run_mode not in ("train", "train_eval"):
        return f"memory plan: not computed for run_mode {cfg.run_mode} (SFT training only)"
    sizes = plan_mesh(cfg, mesh)
    if sizes is None:
        return "memory plan: mesh unknown here (give jax.mesh_shape with every axis, or a TPU accelerator_type)"
    try:
        model_shape(cfg)
    except ConfigError as exc:  # e.g. a hub id naming no preset: nothing to plan with, nothing to refuse
        return f"{exc} (not checked)"
    device, limit = device_limit(cfg, in_process=in_process,
                                 override_gib=device_memory_gib if device_memory_gib else None)
    if device_memory_gib == 0:
        device, limit = "--device-memory 0", None
    name, _ = device_name(cfg, in_process=in_process)
    gpu = bool(name) and (device_kind(name) in _GPU_KINDS or "nvidia" in name.lower())
    plan = build_plan(cfg, sizes, device=device, limit=limit, gpu=gpu)
    if not plan.fits:
        raise ConfigError(plan.refusal())
    return plan.format()
