"""Subprocess worker of tests/plugins/test_orbax_store.py (XLA_FLAGS must be set before jax loads).

``save ROOT SEEDS [--coordinator HOST:PORT --nproc N --pid I]``: build the deterministic state of
each seed as `jax.Array` s sharded over a (2, 4) mesh of all devices (of all processes with
``--coordinator``) and save it as checkpoint ``last`` through the `orbax` store, one save per seed,
calling `wait` after each but the last (so SID_FAILPOINT=<point>:<n> can kill the n-th save).
``restore ROOT MESH [--coordinator ...]``: restore ``last`` onto a 1-D mesh of the first MESH
(global) devices with other partition specs (each process checks the shards it holds), and print JSON ``{"seed": s, "shardings": ..., "params_only": ...}`` where s is
the seed whose state is bitwise equal to what came back (-1 if none).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

SHAPES = {"model/embed/embedding": ((256, 64), "float32"),  # [V, D]
          "model/layers/0/mlp/kernel": ((64, 128), "bfloat16"),  # [D, F]
          "model/norm/scale": ((64,), "float32")}  # [D]


def state(seed: int) -> dict:
    """Host copy of the deterministic state of `seed` (params + an Adam-like opt_state)."""
    import ml_dtypes

    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(shape).astype(np.dtype(getattr(ml_dtypes, dt, dt)))
              for k, (shape, dt) in SHAPES.items()}
    mu = {k: (v * 0.5).astype(v.dtype) for k, v in params.items()}
    return {"params": params, "opt_state": {"0": {"count": np.array(seed, np.int32), "mu": mu}}}


def _spec(key: str, mesh_axes: tuple[str, ...]):
    from jax.sharding import PartitionSpec as P

    if len(SHAPES[key][0]) == 1:
        return P()
    return P(*mesh_axes) if len(mesh_axes) == 2 else P(None, mesh_axes[0])


def _device_tree(host: dict, mesh) -> dict:
    import jax
    from jax.sharding import NamedSharding

    def put(key: str, arr: np.ndarray):
        sharding = NamedSharding(mesh, _spec(key, mesh.axis_names))
        return jax.make_array_from_callback(arr.shape, sharding, lambda idx: arr[idx])

    return {"params": {k: put(k, v) for k, v in host["params"].items()},
            "opt_state": {"0": {"count": host["opt_state"]["0"]["count"],
                                "mu": {k: put(k, v) for k, v in host["opt_state"]["0"]["mu"].items()}}}}


def save(args) -> None:
    import jax

    if args.coordinator:
        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.nproc,
                                   process_id=args.pid)
    from jax.sharding import Mesh
    from sid_stores.config import OrbaxConfig
    from sid_stores.orbax_store import OrbaxStore

    mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model"))
    store = OrbaxStore(args.root, OrbaxConfig())
    seeds = [int(s) for s in args.seeds.split(",")]
    for i, seed in enumerate(seeds):
        store.save("last", _device_tree(state(seed), mesh), {"seed": seed})
        if i < len(seeds) - 1:
            store.wait()
    store.wait()
    print(json.dumps({"process": jax.process_index(), "devices": len(jax.local_devices())}))


def _equal(arr, want: np.ndarray) -> bool:
    """Bitwise equality of a (possibly multi-process) jax.Array: each process checks its own shards."""
    if arr.dtype != want.dtype or arr.shape != want.shape:
        return False
    return all(np.asarray(sh.data).tobytes() == want[sh.index].tobytes() for sh in arr.addressable_shards)


def restore(args) -> None:
    import jax

    if args.coordinator:
        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.nproc,
                                   process_id=args.pid)
    from jax.sharding import Mesh, NamedSharding
    from sid_stores.orbax_store import OrbaxStore

    mesh = Mesh(np.array(jax.devices()[: args.mesh]), ("x",))
    shardings = {k: NamedSharding(mesh, _spec(k, ("x",))) for k in SHAPES}
    mu_key = "model/embed/embedding"  # one optimizer leaf restored sharded too, by its tree path
    shardings[f"opt_state/0/mu/{mu_key}"] = shardings[mu_key]
    store = OrbaxStore(args.root)
    tree, meta = store.restore("last", shardings=shardings)
    placed = {k: str(v.sharding.spec) for k, v in tree["params"].items() if isinstance(v, jax.Array)}
    want = state(meta["seed"])
    equal = all(_equal(tree["params"][k], w) for k, w in want["params"].items())
    mu = tree["opt_state"]["0"]["mu"]
    equal = equal and isinstance(mu[mu_key], jax.Array) and all(
        _equal(mu[k], w) if k == mu_key else (isinstance(mu[k], np.ndarray) and mu[k].tobytes() == w.tobytes())
        for k, w in want["opt_state"]["0"]["mu"].items())
    only, _ = store.restore("last", params_only=True)
    print(json.dumps({"process": jax.process_index(), "seed": meta["seed"] if equal else -1, "shardings": placed,
                      "params_only": sorted(only), "names": store.names(), "damaged": store.damaged()}))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("save")
    s.add_argument("root")
    s.add_argument("seeds")
    r = sub.add_parser("restore")
    r.add_argument("root")
    r.add_argument("mesh", type=int)
    for p in (s, r):
        p.add_argument("--coordinator")
        p.add_argument("--nproc", type=int, default=1)
        p.add_argument("--pid", type=int, default=0)
    args = parser.parse_args(argv)
    save(args) if args.mode == "save" else restore(args)


if __name__ == "__main__":
    main(sys.argv[1:])
