"""`export_hf` writes a folder transformers loads with identical logits; `load_hf` error paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flax import nnx

from sidcore.errors import CheckpointError, ConfigError
from sidcore.model import export_hf, load_hf
from sidcore.model.hf_params import flatten_params, hf_to_path, path_to_hf


@pytest.mark.torch
@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
@pytest.mark.parametrize("tied", [True, False])
def test_export_loads_in_transformers_with_same_logits(tmp_path, make_tiny, tied, family):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = make_tiny(tied=tied, seed=11, family=family)
    out = export_hf(model, model.cfg, tmp_path / "export")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp dir renamed away
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert hf.config.tie_word_embeddings is tied
    assert type(hf).__name__ == ("Qwen3ForCausalLM" if family == "qwen3" else "Qwen2ForCausalLM")
    if family == "qwen3":
        assert hf.config.head_dim == 32
        ours = nnx.state(model, nnx.Param)["model"]["layers"][0]["self_attn"]["q_norm"]["scale"][...]
        theirs = hf.model.layers[0].self_attn.q_norm.weight.detach().numpy()
        np.testing.assert_array_equal(np.asarray(ours), theirs)
    ids = np.random.default_rng(0).integers(1, 128, (2, 9))
    mask = np.ones_like(ids)
    mask[1, :3] = 0  # left padding on row 1
    pos = np.maximum(np.cumsum(mask, -1) - 1, 0)
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                 position_ids=torch.tensor(pos)).logits.numpy()
    got = np.asarray(model(ids, attention_mask=mask))
    real = mask.astype(bool)
    assert np.abs(got[real] - ref[real]).max() <= 1e-5


@pytest.mark.torch
def test_plain_generate_on_the_export_stops_at_eos(tmp_path, make_tiny):
    """With the special-token ids in config.json + generation_config.json, `generate()` needs no
    arguments to stop: make the greedy first token the EOS id and it stops right after it."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = make_tiny(tied=False, seed=14)
    prompt = torch.tensor([[5, 17, 42, 9]])
    free = export_hf(model, None, tmp_path / "free")
    hf = transformers.AutoModelForCausalLM.from_pretrained(free, dtype=torch.float32).eval()
    with torch.no_grad():
        first = int(hf(prompt).logits[0, -1].argmax())
    ids = {"bos_token_id": 1, "eos_token_id": first, "pad_token_id": 0}
    out = export_hf(model, None, tmp_path / "stops", extra_config=ids, generation_config=ids)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "generation_config.json", "model.safetensors"]
    cfg = json.loads((out / "config.json").read_text())
    assert {k: cfg[k] for k in ids} == ids
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert hf.generation_config.eos_token_id == first and hf.generation_config.pad_token_id == 0
    with torch.no_grad():
        got = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False)
    assert got[0].tolist() == prompt[0].tolist() + [first]  # stopped at EOS, not after 8 tokens


def test_special_token_ids_of_the_bundled_tokenizer():
    from sidcore.data.tokenizer import load_tokenizer
    from sidcore.model.hf_params import special_token_ids

    tok = load_tokenizer("bundled")
    ids = special_token_ids(tok)
    assert ids["eos_token_id"] == tok.eos_token_id and ids["pad_token_id"] == tok.pad_token_id
    assert ids["bos_token_id"] == tok.convert_tokens_to_ids("<|endoftext|>")  # Qwen2.5: no BOS token


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_export_then_load_round_trips_params(tmp_path, make_tiny, family):
    from safetensors.numpy import load_file

    model = make_tiny(tied=False, seed=12, family=family)
    out = export_hf(model, None, tmp_path / "rt")
    export_hf(model, None, tmp_path / "rt")  # overwriting an existing folder works
    names = set(load_file(str(out / "model.safetensors")))
    assert "lm_head.weight" in names
    assert ("model.layers.1.self_attn.q_proj.bias" in names) is (family == "qwen2")
    assert ("model.layers.1.self_attn.k_norm.weight" in names) is (family == "qwen3")
    back, cfg = load_hf(out)
    assert cfg == model.cfg
    a = flatten_params(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    b = flatten_params(nnx.to_pure_dict(nnx.state(back, nnx.Param)))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))


def test_mapping_table_both_directions():
    assert hf_to_path("model.layers.3.self_attn.k_proj.weight") == (
        "model/layers/3/self_attn/k_proj/kernel", True)
    assert hf_to_path("model.layers.0.self_attn.o_proj.bias") is None  # Qwen2 has no o bias
    assert hf_to_path("model.layers.2.post_attention_layernorm.weight") == (
        "model/layers/2/post_attention_layernorm/scale", False)
    assert path_to_hf("lm_head/kernel") == ("lm_head.weight", True)
    assert path_to_hf("model/embed_tokens/embedding") == ("model.embed_tokens.weight", False)
    assert path_to_hf("model/layers/1/mlp/down_proj/kernel") == ("model.layers.1.mlp.down_proj.weight", True)
    assert hf_to_path("model.layers.4.self_attn.q_norm.weight") == (
        "model/layers/4/self_attn/q_norm/scale", False)
    assert path_to_hf("model/layers/0/self_attn/k_norm/scale") == (
        "model.layers.0.self_attn.k_norm.weight", False)


def _tamper(folder, fn):
    from safetensors.numpy import load_file, save_file

    t = load_file(str(folder / "model.safetensors"))
    fn(t)
    save_file(t, str(folder / "model.safetensors"), metadata={"format": "pt"})


def test_load_errors_name_the_tensor(tmp_path, make_tiny):
    model = make_tiny(tied=True, seed=13)
    out = export_hf(model, None, tmp_path / "m")
    _tamper(out, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensor.*model\.layers\.1\.mlp\.up_proj\.weight"):
        load_hf(out)
    out = export_hf(model, None, tmp_path / "m")
    _tamper(out, lambda t: t.__setitem__("model.layers.0.self_attn.o_proj.bias", np.zeros(64, np.float32)))
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'model\.layers\.0\.self_attn\.o_proj"):
        load_hf(out)
    out = export_hf(model, None, tmp_path / "m")
    _tamper(out, lambda t: t.__setitem__("model.norm.weight", np.ones(63, np.float32)))
    with pytest.raises(CheckpointError, match=r"'model\.norm\.weight' has shape \(63,\)"):
        load_hf(out)
    # A tied checkpoint carrying a redundant lm_head.weight still loads.
    out = export_hf(model, None, tmp_path / "m")
    _tamper(out, lambda t: t.__setitem__("lm_head.weight", t["model.embed_tokens.weight"].copy()))
    load_hf(out)
    with pytest.raises(CheckpointError, match="not a model folder"):
        load_hf(tmp_path / "nope")


def test_load_sharded_index_and_bad_config(tmp_path, make_tiny):
    from safetensors.numpy import load_file, save_file

    model = make_tiny(tied=True, seed=14)
    out = export_hf(model, None, tmp_path / "s")
    t = load_file(str(out / "model.safetensors"))
    (out / "model.safetensors").unlink()
    names = sorted(t)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for fname, keys in shards.items():
        save_file({k: t[k] for k in keys}, str(out / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in keys})
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    back, _ = load_hf(out)
    ids = np.arange(1, 7)[None]
    np.testing.assert_array_equal(np.asarray(back(ids)), np.asarray(model(ids)))

    cfg = json.loads((out / "config.json").read_text())
    cfg["use_sliding_window"] = True
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="config.json.*sliding"):
        load_hf(out)


def test_base_model_checkpoint_loads_without_head(tmp_path, make_tiny):
    """A checkpoint saved from a base model (no ``model.`` prefix, no lm_head) loads with head=False."""
    model = make_tiny(tied=False, seed=15, family="qwen3")
    out = export_hf(model, None, tmp_path / "base")

    def to_base(t):
        for name in list(t):
            arr = t.pop(name)
            if name != "lm_head.weight":
                t[name[len("model."):]] = arr

    _tamper(out, to_base)
    with pytest.raises(CheckpointError, match=r"missing tensor\(s\) lm_head\.weight .*head=False"):
        load_hf(out)
    base, cfg = load_hf(out, head=False)
    assert base.lm_head is None and not cfg.tie_word_embeddings
    ids = np.arange(1, 7)[None]
    pos, seg = np.arange(6)[None], np.ones((1, 6), np.int32)
    want = np.asarray(model.hidden(ids, pos, seg))
    np.testing.assert_array_equal(np.asarray(base.hidden(ids, pos, seg)), want)
    with pytest.raises(ValueError, match="without its"):
        base.logits(np.zeros((1, 64), np.float32))
    with pytest.raises(CheckpointError, match="without its untied LM head"):
        export_hf(base, None, tmp_path / "again")
