"""Shared set-up of the `sid` benchmarks: config, model bundle, real Industrial data, HF export, peak FLOP/s.

Every benchmark builds its model through the same path as ``sid run`` (`sidcore.run.assemble.build_model`
on a resolved `RunConfig`), so the vocabulary is the real Qwen2.5 tokenizer plus the Industrial SID
tokens unless ``--compact-vocab`` remaps the ids the data actually uses onto a small vocabulary.
Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--hidden", type=int, default=128)
    g.add_argument("--intermediate", type=int, default=0, help="0: 4 x hidden")
    g.add_argument("--layers", type=int, default=2)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--kv-heads", type=int, default=2)
    g.add_argument("--preset", default="", choices=["", "qwen2_5_0_5b", "qwen2_5_1_5b"],
                   help="a real Qwen2.5 shape (random init, real vocab); overrides --hidden/--layers/...")
    g.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="jax.compute_dtype (params stay float32); HF runs under torch.autocast in the same dtype")
    g.add_argument("--compact-vocab", action="store_true",
                   help="remap the token ids used by the data to a small dense vocabulary")
    g.add_argument("--data-dir", default="bundled", help="'bundled' sample or a MiniOneRec data/Amazon folder")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override (repeatable), e.g. data.pack_rows_multiple=8")


def load_cfg(args: argparse.Namespace, extra: Sequence[str] = ()) -> Any:
    """`RunConfig` of configs/default.yaml with the benchmark's model shape."""
    from sidcore.plugins import load_plugins
    from sidcore.config import loading

    inter = args.intermediate or 4 * args.hidden
    if getattr(args, "preset", ""):
        shape = [f"model.preset={args.preset}", "model.overrides={}"]
    else:
        shape = [f"model.overrides={{hidden_size: {args.hidden}, intermediate_size: {inter}, "
                 f"num_hidden_layers: {args.layers}, num_attention_heads: {args.heads}, "
                 f"num_key_value_heads: {args.kv_heads}}}"]
    overrides = [
        f"data.data_dir={args.data_dir}",
        *shape,
        f"seed={args.seed}",
        "jax.param_dtype=float32",
        f"jax.compute_dtype={getattr(args, 'dtype', 'float32')}",
        *extra,
        *getattr(args, "set", []),
    ]
    return loading.load_config(ROOT / "configs" / "default.yaml", load_plugins().registry, overrides=overrides)


def machine_line() -> str:
    import jax

    load = os.getloadavg()
    dev = jax.devices()[0]
    acc = "" if dev.platform == "cpu" else f"; {dev.device_kind} x{jax.device_count()}"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"load avg {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}{acc}")


def on_gpu() -> bool:
    import jax

    return jax.devices()[0].platform == "gpu"


def torch_device() -> str:
    """Where the HF PyTorch side runs: the GPU when JAX has one too (same hardware for both)."""
    import torch

    return "cuda" if on_gpu() and torch.cuda.is_available() else "cpu"


def torch_sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# Dense bf16 / tf32 tensor-core datasheet peaks (FLOP/s) for the MFU column on known GPUs.
DATASHEET_PEAK = {"H100": {"bfloat16": 989.4e12, "float32": 494.7e12},
                  "H200": {"bfloat16": 989.4e12, "float32": 494.7e12}}


def datasheet_peak(dtype: str) -> float | None:
    import jax

    kind = jax.devices()[0].device_kind
    for name, peaks in DATASHEET_PEAK.items():
        if name in kind:
            return peaks[dtype]
    return None


class Remap:
    """Dense renumbering of the token ids that occur (``--compact-vocab``)."""

    def __init__(self, keep: Sequence[int]) -> None:
        self.ids = sorted(set(int(i) for i in keep))
        self.map = {old: new for new, old in enumerate(self.ids)}

    def __call__(self, ids: Sequence[int]) -> list[int]:
        return [self.map[int(i)] if i >= 0 else int(i) for i in ids]


def compact_examples(examples: list[Any], extra_ids: Sequence[int]) -> tuple[list[Any], Remap]:
    import attrs

    rm = Remap([t for e in examples for t in e.input_ids] + list(extra_ids))
    out = [attrs.evolve(e, input_ids=rm(e.input_ids), labels=rm(e.labels)) for e in examples]
    return out, rm


def build_bundle(cfg: Any, vocab_size: int | None = None) -> Any:
    """``sid``'s model bundle; with `vocab_size` a fresh model of that vocabulary instead."""
    from sidcore.run.assemble import build_model

    bundle = build_model(cfg)
    if vocab_size is None:
        return bundle
    import attrs
    from flax import nnx

    from sidcore.model import Qwen2ForCausalLM

    hf_cfg = bundle.model_config.replace(vocab_size=vocab_size)
    model = nnx.jit(lambda: Qwen2ForCausalLM(hf_cfg, rngs=nnx.Rngs(cfg.seed)))()
    return attrs.evolve(bundle, model=model, model_config=hf_cfg, real_vocab=vocab_size)


def sid_train_step(bundle: Any) -> tuple[Any, Any, Any]:
    """(params, AdamW state, jitted `make_train_step` donating both) for the bundle's model.

    The params are copies, so donating them leaves the model's own buffers intact.
    """
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from sidcore.model.merge import make_merge
    from sidcore.train.step import make_train_step

    graphdef, st = nnx.split(bundle.model)
    params = jax.tree.map(jnp.copy, nnx.to_pure_dict(st))
    merge = make_merge(graphdef, jax.tree.map(lambda v: v, st))
    tx = optax.adamw(1e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0)
    step = jax.jit(make_train_step(merge, tx, real_vocab=bundle.real_vocab), donate_argnums=(0, 1))
    return params, jax.jit(tx.init)(params), step


def export_to_hf(bundle: Any, out_dir: Path) -> Any:
    """Export the bundle's weights and load them into ``transformers.Qwen2ForCausalLM`` (fp32)."""
    import torch
    import transformers

    from sidcore.model import export_hf

    tok = bundle.tokenizer
    export_hf(bundle.model, None, out_dir, extra_config={"eos_token_id": int(tok.eos_token_id),
                                                        "pad_token_id": int(tok.pad_token_id)})
    hf = transformers.Qwen2ForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    return hf.to(torch_device())


def matmul_peak_flops(n: int = 0, inner: int = 8, repeats: int = 5, dtype: str = "float32") -> float:
    """Best FLOP/s of a jitted loop of ``n x n`` matmuls in `dtype` (this machine's practical peak).

    ``n`` 0: 2048 on CPU, 8192 on a GPU (large enough to fill the tensor cores).
    """
    import jax
    import jax.numpy as jnp

    n = n or (8192 if on_gpu() else 2048)
    @jax.jit
    def loop(a, b):
        def body(_, x):
            return (x @ b) * (1.0 / n)

        return jax.lax.fori_loop(0, inner, body, a)

    key = jax.random.PRNGKey(0)
    a = jax.random.normal(key, (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.fold_in(key, 1), (n, n), jnp.float32).astype(dtype)
    loop(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        loop(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 * inner / best


def catalog_paths(catalog: Any, eos_id: int) -> Any:
    """``[N, T]`` numpy: each item's SID tokens, the SID suffix and EOS (what a trie processor allows)."""
    import numpy as np

    ids = np.asarray(catalog.token_ids, np.int64)
    tail = np.array([*catalog.suffix_ids, eos_id], np.int64)
    return np.concatenate([ids, np.broadcast_to(tail, (ids.shape[0], tail.size))], axis=1)


def table(rows: list[list[Any]], header: list[str]) -> str:
    """Markdown table."""
    cells = [[str(c) for c in header]] + [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in r]
                                          for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(r) for r in cells[1:])])



@contextlib.contextmanager
def scratch_dir(prefix: str, parent: str | Path | None = None) -> Iterator[Path]:
    """A fresh folder made for this run (``tempfile.mkdtemp`` under `parent`, default the system
    temp folder), removed with everything in it on exit -- and nothing else: never `parent` or any
    folder the run did not create."""
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=None if parent is None else str(parent)))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
