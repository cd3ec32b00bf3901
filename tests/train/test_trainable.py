"""``train.trainable=sid_rows`` (MiniOneRec freeze_LLM): only the SID rows of the embedding and the
untied LM head move; every other parameter and row stays bitwise equal, with AdamW weight decay,
clipping and Muon alike."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from sidcore.errors import ConfigError
from sidcore.model import Qwen2Config, Qwen2ForCausalLM
from sidcore.model.hf_params import flatten_params
from sidcore.train.trainable import apply_trainable, sid_rows_mask

from tests.train.test_train_step import DataCfg, make_examples, sid_setup

SID_IDS = [100, 101, 117, 127]  # the "added" rows of a 128-row vocabulary


def run_steps(tx, *, tied, steps=3):
    from sidcore.train.batches import collate_step

    model = Qwen2ForCausalLM(Qwen2Config.tiny(vocab_size=128, tie_word_embeddings=tied), rngs=nnx.Rngs(0))
    before = flatten_params(jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.split(model)[1])))
    params = nnx.to_pure_dict(nnx.split(model)[1])
    tx = apply_trainable("sid_rows", tx, params, SID_IDS)
    params, opt, step = sid_setup(model, tx)
    examples = make_examples(16, 128, seed=3)
    for s in range(steps):  # targets include SID ids, so their rows get gradients
        hb = collate_step(examples[s * 4:(s + 1) * 4], micro_rows=4, n_micro=1, data_cfg=DataCfg(), pad_id=0)
        params, opt, metrics = step(params, opt, hb)
        assert np.isfinite(float(metrics["loss"]))
    return before, flatten_params(jax.tree.map(np.asarray, params))


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("name", ["adamw", "muon"])
def test_only_sid_rows_change(tied, name):
    inner = optax.adamw(1e-2, weight_decay=0.1) if name == "adamw" else optax.contrib.muon(1e-2)
    before, after = run_steps(optax.chain(optax.clip_by_global_norm(1.0), inner), tied=tied)
    assert before.keys() == after.keys()
    sid = np.zeros(128, bool)
    sid[SID_IDS] = True
    for key, old in before.items():
        new = after[key]
        if key == "model/embed_tokens/embedding":
            np.testing.assert_array_equal(new[~sid], old[~sid])
            assert not np.array_equal(new[sid], old[sid]), "SID rows did not learn"
        elif key == "lm_head/kernel":
            np.testing.assert_array_equal(new[:, ~sid], old[:, ~sid])
            assert not np.array_equal(new[:, sid], old[:, sid])
        else:
            assert new.tobytes() == old.tobytes(), f"{key} moved"


def test_mask_shapes_and_errors():
    model = Qwen2ForCausalLM(Qwen2Config.tiny(vocab_size=128, tie_word_embeddings=False), rngs=nnx.Rngs(0))
    params = nnx.to_pure_dict(nnx.split(model)[1])
    flat = flatten_params(sid_rows_mask(params, SID_IDS))
    assert flat["model/embed_tokens/embedding"].shape == (128, 1) and flat["lm_head/kernel"].shape == (1, 128)
    assert int(flat["model/embed_tokens/embedding"].sum()) == 4
    assert all(v.shape == () and not bool(v) for k, v in flat.items() if "embed" not in k and "lm_head" not in k)
    with pytest.raises(ConfigError, match="no SID tokens"):
        sid_rows_mask(params, [])
    assert apply_trainable("all", optax.sgd(1.0), params, SID_IDS).update is not None
