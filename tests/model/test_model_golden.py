"""Golden logits (no torch needed): our model must still reproduce `tests/golden/qwen2_tiny_logits.npz`."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from sidcore.model import abstract_model, from_hf_config
from sidcore.model.hf_params import unflatten_params

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "qwen2_tiny_logits.npz"


def test_golden_logits():
    data = np.load(GOLDEN)
    cfg = from_hf_config(json.loads(str(data["config"])))
    model = abstract_model(cfg)
    graphdef, state = nnx.split(model)
    params = {k[len("param/"):]: jnp.asarray(data[k]) for k in data.files if k.startswith("param/")}
    nnx.replace_by_pure_dict(state, unflatten_params(params))
    model = nnx.merge(graphdef, state)
    mask = data["attention_mask"]
    got = np.asarray(model(jnp.asarray(data["input_ids"]), attention_mask=jnp.asarray(mask)))
    real = mask.astype(bool)
    assert got.shape == data["logits"].shape
    assert np.abs(got[real] - data["logits"][real]).max() <= 1e-5
