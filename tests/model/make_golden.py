"""Regenerate `tests/golden/qwen2_tiny_logits.npz` (run: `.venv/bin/python tests/model/make_golden.py`).

The file holds a tiny model built by OUR code from a fixed seed (default init plus fixed noise so
biases and norm scales are non-trivial), a left-padded input batch and the float32 logits. The
golden test reloads the stored parameters, so a change to the init does not invalidate it; only a
change to the forward math does. Regenerate only after checking the new math against transformers
(tests/model/test_model_hf_parity.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sidcore.model import Qwen2Config, Qwen2ForCausalLM, to_hf_config
from sidcore.model.hf_params import flatten_params

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "qwen2_tiny_logits.npz"


def build() -> dict[str, np.ndarray]:
    cfg = Qwen2Config.tiny()
    model = Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(1234))
    state = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.PRNGKey(4321), len(leaves))
    nnx.update(model, jax.tree.unflatten(treedef, [x + 0.05 * jax.random.normal(k, x.shape) for x, k in
                                                   zip(leaves, keys)]))
    rng = np.random.default_rng(2024)
    ids = rng.integers(1, cfg.vocab_size, (2, 8)).astype(np.int32)
    mask = np.ones((2, 8), np.int32)
    mask[1, :3] = 0  # left padding on row 1
    ids[mask == 0] = 0
    logits = np.asarray(model(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
    out = {f"param/{k}": np.asarray(v) for k, v in flatten_params(nnx.to_pure_dict(state)).items()}
    out.update(input_ids=ids, attention_mask=mask, logits=logits,
               config=np.array(json.dumps(to_hf_config(cfg))))
    return out


def main() -> int:
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(GOLDEN, **build())
    sys.stdout.write(f"wrote {GOLDEN}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
