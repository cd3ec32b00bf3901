"""Item-text embeddings (`sidcore.index.embed`): upstream text cleaning, item-id order, and pooling
equal to transformers' `AutoModel` masked mean on tiny random Qwen2 / Qwen3 checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sidcore.data.minionerec import bundled_data_dir, split_paths
from sidcore.errors import ConfigError, DataError, UsageError
from sidcore.index.embed import clean_text, embed_items, item_text, length_buckets, read_item_texts

CATEGORY = "Industrial_and_Scientific"


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("Digital Caliper", "Digital Caliper."),  # a trailing dot is forced
        ("Fits 1/2&quot; pipe&amp;tube", "Fits 1/2 pipe&tube."),  # entities unescaped, then '"' dropped
        ("<p>Great <b>value</b></p>\nBuy now!\r\n", "Great valueBuy now!."),  # newlines dropped, not spaced
        ("  Ends with dots...  ", "Ends with dots."),  # a dot run becomes one dot
        ("", "."),  # an empty field still becomes "." (upstream keeps it)
        ("..", ".."),  # the first character never counts as a trailing dot
        (["<i>First</i> ", ' "second"'], "First second."),  # lists: cleaned element-wise, space-joined
        ({"k": "v"}, "'k': 'v'."),  # dicts: str() without the braces
        ("x" * 1998, "x" * 1998 + "."),  # 1999 characters: kept
        ("x" * 1999, ""),  # 2000 or more after cleaning: the field is dropped, not cut
    ],
)
def test_clean_text_matches_upstream_rules(raw, cleaned):
    assert clean_text(raw) == cleaned


def test_item_text_joins_title_and_description():
    rich = {"title": "Gloves", "description": "Nitrile, <b>100</b> pack"}
    assert item_text(rich) == "Gloves. Nitrile, 100 pack."
    assert item_text({"title": "Gloves", "description": ""}) == "Gloves. ."  # upstream's "." for empty text
    assert item_text({"brand": "Acme"}) == "unknown item"  # neither field present
    assert item_text({"title": None, "description": "y" * 3000}) == "unknown item"
    assert item_text({"title": "a", "brand": "B"}, features=("brand", "title")) == "B. a."


def _bundled_items() -> dict:
    return json.loads(split_paths(bundled_data_dir(), CATEGORY)["items"].read_text())


@pytest.fixture
def data_dir(tmp_path):
    """A MiniOneRec data folder with 7 bundled items, keys written out of order, some descriptions."""
    src = _bundled_items()
    items = {str(i): dict(src[str(i)]) for i in range(7)}
    items["2"]["description"] = "Heavy-duty &amp; <em>rust-proof</em>. Fits most\nbenches..."
    items["5"]["title"] = ""
    items["5"]["description"] = ""
    items["6"]["description"] = " ".join(["long"] * 40)  # truncated by max_length
    path = split_paths(tmp_path, CATEGORY)["items"]
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({k: items[k] for k in ["3", "0", "6", "1", "5", "2", "4"]}))
    return tmp_path


def test_read_item_texts_in_id_order_and_errors(data_dir, tmp_path):
    path = split_paths(data_dir, CATEGORY)["items"]
    src = _bundled_items()
    texts = read_item_texts(path)
    assert len(texts) == 7
    assert texts[0] == clean_text(src["0"]["title"]) + " ."
    assert texts[2].endswith("Heavy-duty & rust-proof. Fits mostbenches.")
    assert texts[5] == ". ."  # both fields empty: each still cleans to "."
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"0": {"title": "a"}, "2": {"title": "b"}}))
    with pytest.raises(DataError, match=r"bad\.json: item ids must be 0\.\.1 .*missing 1"):
        read_item_texts(bad)
    bad.write_text(json.dumps({"x": {"title": "a"}}))
    with pytest.raises(DataError, match=r"\[x\]: item ids must be non-negative integers"):
        read_item_texts(bad)
    bad.write_text(json.dumps({"0": "just a title"}))
    with pytest.raises(DataError, match=r"\[0\]: expected an object"):
        read_item_texts(bad)
    with pytest.raises(DataError, match="missing.json"):
        read_item_texts(tmp_path / "missing.json")


def test_length_buckets():
    assert length_buckets(100) == (16, 32, 64, 100)
    assert length_buckets(16) == (16,)
    assert length_buckets(8) == (8,)


# ----------------------------------------------------------------------------- pooling vs transformers
HIDDEN = 32


def _save_tiny_hf(folder, family: str):
    """Tiny random transformers model + the bundled Qwen2.5 tokenizer, both saved under `folder`.

    Qwen3 is saved as a *base* model (``Qwen3Model``: no ``model.`` prefix, no head), the way
    Qwen3-Embedding checkpoints are; Qwen2 as an untied causal LM whose head the embedder drops.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from sidcore.data.tokenizer import load_tokenizer

    tok = load_tokenizer("bundled")
    common = dict(vocab_size=len(tok), hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, rope_theta=1e6, max_position_embeddings=512)
    torch.manual_seed(0)
    if family == "qwen3":
        config = transformers.Qwen3Config(head_dim=16, tie_word_embeddings=True, **common)
        model = transformers.Qwen3Model(config)
    else:
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(tie_word_embeddings=False, **common))
    with torch.no_grad():  # non-trivial norm scales and biases
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["qwen2", "qwen3"])
def hf_folder(request, tmp_path_factory):
    return _save_tiny_hf(tmp_path_factory.mktemp(f"embedder_{request.param}"), request.param)


def _reference(folder, texts, max_length):
    """The upstream computation with transformers: right padding, masked mean of last_hidden_state."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(folder, padding_side="right")
    model = transformers.AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    enc = tok(texts, max_length=max_length, truncation=True, padding="longest", return_tensors="pt")
    with torch.no_grad():
        hidden = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
    mask = enc.attention_mask.unsqueeze(-1).float()
    return ((hidden * mask).sum(1) / mask.sum(1)).numpy(), enc.attention_mask.sum(1).numpy()


@pytest.mark.torch
def test_pooled_embedding_equals_transformers_masked_mean(hf_folder, data_dir):
    items = split_paths(data_dir, CATEGORY)["items"]
    max_length = 24
    got = embed_items(str(hf_folder), items, batch_size=3, max_length=max_length, buckets=(8, 16))
    texts = read_item_texts(items)
    ref, lengths = _reference(hf_folder, texts, max_length)
    assert lengths.max() == max_length and lengths.min() < 8  # truncation and several buckets happen
    assert got.shape == (7, HIDDEN) and got.dtype == np.float32
    scale = max(1.0, float(np.abs(ref).max()))
    assert np.abs(got - ref).max() <= 1e-5 * scale
    # Row i is item i whatever the batching: one text at a time gives the same rows.
    alone = np.stack([_reference(hf_folder, [t], max_length)[0][0] for t in texts])
    assert np.abs(got - alone).max() <= 1e-5 * scale
    assert not np.allclose(got[0], got[1])


@pytest.mark.torch
def test_embed_command_writes_npy(hf_folder, data_dir, tmp_path):
    from click.testing import CliRunner

    from sidcore.index.commands import embed_command

    out = tmp_path / "emb" / "items.npy"
    args = ["--model", str(hf_folder), "--data-dir", str(data_dir), "--category", CATEGORY, "--out", str(out),
            "--batch-size", "4", "--max-length", "24"]
    result = CliRunner().invoke(embed_command, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "7 items x 32 float32" in result.output
    emb = np.load(out)
    want = embed_items(str(hf_folder), split_paths(data_dir, CATEGORY)["items"], batch_size=4, max_length=24)
    np.testing.assert_allclose(emb, want, rtol=0, atol=1e-6)
    assert [p.name for p in out.parent.iterdir()] == ["items.npy"]  # no temporary left behind
    both = CliRunner().invoke(embed_command, args + ["--items", "x.json"])
    assert isinstance(both.exception, UsageError) and "not both" in str(both.exception)


def test_bad_arguments_are_one_line_errors(tmp_path, data_dir):
    items = split_paths(data_dir, CATEGORY)["items"]
    with pytest.raises(ConfigError, match="expected a model folder or a ModelBundle"):
        embed_items(42, items)
    from sidcore.errors import CheckpointError

    with pytest.raises(CheckpointError, match="not a model folder"):
        embed_items(str(tmp_path / "nope"), items)


SHARDED_CHILD = """
import json
import jax, numpy as np
from flax import nnx
from sidcore.index.embed import embed_texts
from sidcore.model import Qwen2Config, Qwen2ForCausalLM, make_mesh

class CharTokenizer:  # ids = byte values + 1, enough to drive the pooling
    pad_token_id = 0
    def __call__(self, texts, max_length, truncation, padding):
        return {"input_ids": [[b + 1 for b in t.encode()[:max_length]] for t in texts]}

assert jax.device_count() == 8
model = Qwen2ForCausalLM(Qwen2Config.tiny_qwen3(vocab_size=256), rngs=nnx.Rngs(0))
texts = ["item %d " % i + "x" * (3 * i) for i in range(11)]
ref = embed_texts(model, CharTokenizer(), texts, batch_size=4, max_length=40, mesh=make_mesh("1,1,1",
                  devices=jax.devices()[:1]))
diffs = {}
for shape in ("auto", "2,4,1", "2,1,4"):
    got = embed_texts(model, CharTokenizer(), texts, batch_size=4, max_length=40, mesh=make_mesh(shape))
    diffs[shape] = float(np.abs(got - ref).max())
print("REPORT" + json.dumps({"diffs": diffs, "scale": float(np.abs(ref).max())}))
"""


def test_sharded_embedding_equals_single_device():
    """Batches sharded over dp x fsdp (8 CPU devices; batch 4 rounds up to 8) give the same rows."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SHARDED_CHILD], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT"))
    report = json.loads(line[len("REPORT"):])
    for shape, diff in report["diffs"].items():
        assert diff <= 1e-5 * max(1.0, report["scale"]), shape
