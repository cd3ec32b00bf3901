"""Device mesh construction and parameter partition rules (reference-spec §4.2).

The mesh always has the axes ``("dp", "fsdp", "tp")`` and is built as a plain `Mesh` over a
reshaped device array, which gives *Auto* axis types (`jax.make_mesh` would default to Explicit
axes, under which indexing a sharded result raises). Parameters are partitioned by regex rules on
their ``/``-joined path, first match wins; the same rules apply to optimizer states and gradient
accumulators because their paths end with the parameter path. A dimension the mesh axis does not
divide falls back to replicated on that dimension; scalars and size-1 leaves are replicated.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import attrs
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from sidcore.errors import ConfigError

__all__ = [
    "AXES", "ShardingRules", "DEFAULT_RULES", "make_mesh", "parse_mesh_shape", "param_partition_spec",
    "param_shardings", "shard_params",
    "put_batch",
    "to_host",
    "DATA_AXES", "path_str",
]


AXES = ("dp", "fsdp", "tp")
Axes = tuple[str | None, ...]


@attrs.frozen(kw_only=True)
class ShardingRules:
    """Mesh axes of each 2-D weight; the field suffix names the weight's dims.

    h = hidden, d = attention heads*head_dim, f = MLP inner, v = vocabulary. Defaults are the
    reference (MLLM-JAX) rules.
    """

    w_qkv_hd: Axes = ("fsdp", "tp")  # q/k/v kernels [H, N*D]
    w_o_dh: Axes = ("tp", "fsdp")  # o kernel [N*D, H]
    w_gate_up_hf: Axes = ("fsdp", "tp")  # gate/up kernels [H, F]
    w_down_fh: Axes = ("tp", "fsdp")  # down kernel [F, H]
    embed_vh: Axes = ("fsdp", "tp")  # embedding [V, H]: vocab on fsdp (hence vocab padding)
    lm_head_hv: Axes = ("fsdp", "tp")  # lm_head kernel [H, V]: hidden on fsdp

    def table(self) -> list[tuple[re.Pattern[str], Axes]]:
        """(regex, axes) in match order; anything else (norm scales, biases) is replicated."""
        return [
            (re.compile(r"(^|/)self_attn/[qkv]_proj/kernel$"), self.w_qkv_hd),
            (re.compile(r"(^|/)self_attn/o_proj/kernel$"), self.w_o_dh),
            (re.compile(r"(^|/)mlp/(gate|up)_proj/kernel$"), self.w_gate_up_hf),
            (re.compile(r"(^|/)mlp/down_proj/kernel$"), self.w_down_fh),
            (re.compile(r"(^|/)embed_tokens/embedding$"), self.embed_vh),
            (re.compile(r"(^|/)lm_head/kernel$"), self.lm_head_hv),
        ]


DEFAULT_RULES = ShardingRules()


def parse_mesh_shape(shape: str, n_devices: int) -> tuple[int, int, int]:
    """Parse ``"a,b,c"`` / ``"dp:a,fsdp:b,tp:c"`` (one entry may be -1) into (dp, fsdp, tp)."""
    text = shape.strip().lstrip("!")
    if text in ("", "auto"):
        return (1, n_devices, 1)
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        if all(":" in p for p in parts):
            named = {k.strip(): int(v) for k, v in (p.split(":", 1) for p in parts)}
            bad = sorted(set(named) - set(AXES))
            if bad:
                raise ConfigError(f"mesh_shape {shape!r}: unknown axis name(s) {bad} (use dp, fsdp, tp)")
            dims = [named.get(a, 1) for a in AXES]
        elif len(parts) == 3 and not any(":" in p for p in parts):
            dims = [int(p) for p in parts]
        else:
            raise ConfigError(f'mesh_shape {shape!r}: expected "a,b,c" or "dp:a,fsdp:b,tp:c"')
    except ValueError as e:
        raise ConfigError(f"mesh_shape {shape!r}: not integers ({e})") from e
    if dims.count(-1) > 1 or any(d == 0 or d < -1 for d in dims):
        raise ConfigError(f"mesh_shape {shape!r}: sizes must be positive with at most one -1")
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1]))
        if n_devices % known:
            raise ConfigError(f"mesh_shape {shape!r}: {n_devices} devices not divisible by {known}")
        dims[dims.index(-1)] = n_devices // known
    if int(np.prod(dims)) != n_devices:
        raise ConfigError(f"mesh_shape {shape!r}: {dims} needs {int(np.prod(dims))} devices, "
                          f"have {n_devices}")
    return (dims[0], dims[1], dims[2])


def make_mesh(shape: str = "auto", devices: Sequence[Any] | None = None) -> Mesh:
    """Build a ``("dp", "fsdp", "tp")`` mesh with Auto axis types.

    Args:
        shape: ``"auto"`` (single host: all devices on fsdp; multi-host: dp = process count,
            fsdp = local devices, tp = 1), ``"a,b,c"`` or ``"dp:a,fsdp:b,tp:c"`` (one size may be
            -1). A leading ``!`` is accepted for compatibility (the reshape is always plain).
        devices: devices to use (default `jax.devices()`).
    """
    devs = list(jax.devices() if devices is None else devices)
    # Group devices by host so fsdp collectives stay host-local when dp spans processes.
    devs.sort(key=lambda d: (getattr(d, "process_index", 0), d.id))
    n_proc = len({getattr(d, "process_index", 0) for d in devs})
    if shape.strip() in ("", "auto") and n_proc > 1:
        dims = (n_proc, len(devs) // n_proc, 1)
        if dims[0] * dims[1] != len(devs):
            raise ConfigError(f"mesh_shape 'auto': {len(devs)} devices are not spread evenly "
                              f"over {n_proc} hosts")
    else:
        dims = parse_mesh_shape(shape, len(devs))
    if all(d > 1 for d in dims) and getattr(devs[0], "platform", "") == "cpu":
        # Measured on XLA:CPU (jax 0.10.2): a forward with the parameter rules and the batch over
        # ("dp", "fsdp") is off by ~3.6 when dp, fsdp and tp are all > 1; every 2-axis mesh agrees to 1e-6.
        raise ConfigError(f"mesh_shape {shape!r} = {dims}: dp, fsdp and tp all > 1 gives wrong numbers on the CPU "
                          "backend (docs/model.md); keep one of the three axes at 1")
    arr = np.array(devs, dtype=object).reshape(dims)
    try:
        from jax.sharding import AxisType

        return Mesh(arr, AXES, axis_types=(AxisType.Auto,) * 3)
    except (ImportError, TypeError):  # older jax: Auto is the only kind
        return Mesh(arr, AXES)


def path_str(path: Sequence[Any]) -> str:
    """A jax key path (or tuple of keys) -> ``"a/b/0/c"`` (nnx ``.value`` attributes dropped)."""
    parts: list[str] = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            if k.name != "value":
                parts.append(k.name)
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        elif isinstance(k, jax.tree_util.FlattenedIndexKey):
            parts.append(str(k.key))
        else:
            parts.append(str(k))
    return "/".join(parts)


def _axis_size(mesh_shape: dict[str, int], axis: str | None) -> int:
    return 1 if axis is None else int(mesh_shape.get(axis, 1))


def param_partition_spec(path: str | Sequence[Any], shape: Sequence[int], *, mesh: Mesh | None = None,
                         rules: ShardingRules = DEFAULT_RULES) -> P:
    """PartitionSpec of one parameter (or optimizer-state leaf) by the reference rules.

    Args:
        path: ``/``-joined path or a jax key path.
        shape: the leaf's shape.
        mesh: when given, a dim its axis size does not divide is left replicated.
        rules: the rules object.
    """
    p = path if isinstance(path, str) else path_str(path)
    shape = tuple(shape)
    if len(shape) == 0 or int(np.prod(shape)) <= 1:
        return P()
    for rx, axes in rules.table():
        if rx.search(p):
            if len(axes) != len(shape):
                return P()
            if mesh is None:
                return P(*axes)
            sizes = dict(mesh.shape)
            out = []
            for dim, ax in zip(shape, axes):
                n = _axis_size(sizes, ax)
                out.append(ax if dim % n == 0 else None)
            return P(*out)
    return P()


def param_shardings(tree: Any, mesh: Mesh, *, rules: ShardingRules = DEFAULT_RULES) -> Any:
    """Tree of `NamedSharding` matching `tree` (arrays, ShapeDtypeStructs, nnx.State, pure dicts)."""

    def one(kp, leaf):
        shape = getattr(leaf, "shape", ())
        return NamedSharding(mesh, param_partition_spec(kp, shape, mesh=mesh, rules=rules))

    return jax.tree_util.tree_map_with_path(one, tree)


def shard_params(tree: Any, mesh: Mesh, *, rules: ShardingRules = DEFAULT_RULES) -> Any:
    """`jax.device_put` every leaf of `tree` with its rule-based sharding."""
    return jax.device_put(tree, param_shardings(tree, mesh, rules=rules))


DATA_AXES = ("dp", "fsdp")


def put_batch(batch: dict[str, Any], mesh: Mesh, axis: int = 0) -> dict[str, jax.Array]:
    """Shard a *global* host batch over the data axes along `axis`.

    Every process passes the same global arrays; each keeps its contiguous share of the rows
    (``rows / process_count``) and the global array is assembled across processes.
    """
    n, i = jax.process_count(), jax.process_index()
    out = {}
    for k, v in batch.items():
        spec = [None] * v.ndim
        spec[axis] = DATA_AXES
        sharding = NamedSharding(mesh, P(*spec))
        if n == 1:
            out[k] = jax.device_put(v, sharding)
        else:
            per = v.shape[axis] // n
            local = np.take(v, np.arange(i * per, (i + 1) * per), axis=axis)
            out[k] = jax.make_array_from_process_local_data(sharding, local)
    return out


def to_host(tree: Any) -> Any:
    """Fetch a (possibly sharded, possibly multi-process) pytree to host numpy arrays on every process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        tree = multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, jax.device_get(tree))
