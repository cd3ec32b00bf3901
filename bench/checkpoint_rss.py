"""Peak host memory of one process while it saves a sharded state: `orbax` vs the gathered `msgpack` path.

The state (``--gb`` of float32 arrays, 2-D, sharded over a (2, 4) mesh of 8 fake CPU devices) is built
on the devices; the process's resident high-water mark is then reset (``/proc/self/clear_refs`` = 5)
and one checkpoint is saved and awaited. Reported: RSS before, peak RSS during the save, the peak
*above* the state already held, and the time. Modes:

- ``msgpack``: what the kernel does for byte stores: gather the tree to host numpy
  (`sidcore.model.sharding.to_host`), then `MsgpackStore.save` (serialize to one blob, write, fsync);
- ``orbax``: `OrbaxStore.save` with the device arrays, then `wait` (each shard copied to host and
  written by its owner process);
- ``orbax2``: two `jax.distributed` processes x 4 devices (``--processes 2``), each reporting its own
  peak: the per-process cost when the state is spread over hosts, as on a TPU pod.

Every mode runs in a fresh subprocess (XLA_FLAGS must be set before jax is imported). On CPU the
"device" memory is host memory, so RSS before already holds the state. Not a test: numbers depend
on the machine and its load.

    python bench/checkpoint_rss.py --gb 1.0 [--modes msgpack,orbax,orbax2] [--dir /tmp]

Checkpoints go to a fresh scratch folder the bench creates inside ``--dir`` and removes at the end;
nothing else in ``--dir`` is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import common  # noqa: E402

SIDE = 4096  # each array is [SIDE, SIDE] float32 = 64 MiB


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def child(args: argparse.Namespace) -> None:
    import jax
    import numpy as np

    if args.processes > 1:
        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.processes,
                                   process_id=args.pid)
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model"))
    sharding = NamedSharding(mesh, P("data", "model"))
    n = max(1, round(args.gb * 2**30 / (SIDE * SIDE * 4)))
    make = jax.jit(lambda key: jax.random.normal(key, (SIDE, SIDE), np.float32), out_shardings=sharding)
    params = {f"model/layers/{i}/w": make(jax.random.key(i)) for i in range(n)}
    jax.block_until_ready(params)
    state_mb = n * SIDE * SIDE * 4 / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kb("VmRSS") / 1024
    t0 = time.perf_counter()
    out = Path(args.dir)  # this mode's own folder inside the run's scratch folder
    if args.mode == "msgpack":
        from sid_stores.config import MsgpackConfig
        from sid_stores.msgpack_store import MsgpackStore

        from sidcore.model.sharding import to_host

        MsgpackStore(str(out), MsgpackConfig()).save("last", {"params": to_host(params)}, {"step": 1})
    else:
        from sid_stores.config import OrbaxConfig
        from sid_stores.orbax_store import OrbaxStore

        store = OrbaxStore(str(out), OrbaxConfig())
        store.save("last", {"params": params}, {"step": 1})
        returned = time.perf_counter() - t0
        store.wait()
    seconds = time.perf_counter() - t0
    peak = _status_kb("VmHWM") / 1024
    print(json.dumps({"mode": args.mode, "process": jax.process_index(), "state_mb": round(state_mb),
                      "local_state_mb": round(state_mb / jax.process_count()), "rss_before_mb": round(before),
                      "peak_rss_mb": round(peak), "peak_above_state_mb": round(peak - before),
                      "save_s": round(seconds, 1),
                      **({"save_returned_s": round(returned, 2)} if args.mode != "msgpack" else {})}))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: argparse.Namespace) -> None:
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]))
    with common.scratch_dir("sid_checkpoint_rss.", parent=args.dir) as work:  # ours alone
        for mode in args.modes.split(","):
            _run_mode(args, env, mode, work / mode)


def _run_mode(args: argparse.Namespace, env: dict[str, str], mode: str, folder: Path) -> None:
    nproc = 2 if mode == "orbax2" else 1
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={8 // nproc}"
    base = [sys.executable, __file__, "--child", "--gb", str(args.gb), "--dir", str(folder),
            "--mode", mode.rstrip("2"), "--processes", str(nproc), "--coordinator", f"127.0.0.1:{_port()}"]
    procs = [subprocess.Popen(base + ["--pid", str(i)], env=env, stdout=subprocess.PIPE, text=True)
             for i in range(nproc)]
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"{mode}: child failed with exit code {p.returncode}")
        row = json.loads(out.strip().splitlines()[-1])
        row["mode"] = mode
        print(json.dumps(row), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gb", type=float, default=1.0, help="size of the state in GiB")
    p.add_argument("--modes", default="msgpack,orbax,orbax2")
    p.add_argument("--dir", default=tempfile.gettempdir(),
                   help="where the bench makes its own scratch folder (removed at the end; nothing else touched)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--pid", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--coordinator", help=argparse.SUPPRESS)
    args = p.parse_args()
    child(args) if args.child else run(args)


if __name__ == "__main__":
    main()
