"""Bundled tokenizer (decompression, loading) and the SID vocabulary extension (ids, encoding)."""

from __future__ import annotations

import hashlib
import json

import pytest

from sidcore.data.minionerec import read_index
from sidcore.data.tokenizer import (
    add_sid_tokens,
    bundled_tokenizer_dir,
    load_tokenizer,
    sid_token_ids,
    suffix_ids,
)
from sidcore.errors import DataError

# sha256 of the original tokenizer.json (see sidcore/assets/tokenizers/qwen2.5-base/README.md)
TOKENIZER_JSON_SHA256 = "0731c7fc318e4405c95e82079ef97cad7ed89db2b614414827aa49589b369563"


def test_bundled_dir_is_decompressed_once_and_exact(tmp_path):
    first = bundled_tokenizer_dir(cache_dir=tmp_path)
    data = (first / "tokenizer.json").read_bytes()
    assert hashlib.sha256(data).hexdigest() == TOKENIZER_JSON_SHA256
    assert (first / "tokenizer_config.json").is_file()
    mtime = (first / "tokenizer.json").stat().st_mtime_ns
    again = bundled_tokenizer_dir(cache_dir=tmp_path)
    assert again == first and (again / "tokenizer.json").stat().st_mtime_ns == mtime
    # no temporary folders left behind next to the final one
    assert [p.name for p in first.parent.iterdir()] == [first.name]


def test_load_bundled_via_env_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SID_CACHE_DIR", str(tmp_path))
    tok = load_tokenizer("bundled", padding_side="left")
    assert len(tok) == 151665
    assert tok.bos_token_id is None
    assert tok.eos_token_id == tok.pad_token_id == 151643
    assert tok.padding_side == "left"
    assert (tmp_path / "tokenizers").is_dir()
    assert tok.encode("### Response:\n", add_special_tokens=False) == [14374, 5949, 510]


def test_load_tokenizer_padding_side_and_pad_fallback(tokenizer_dir, tmp_path):
    assert load_tokenizer(str(tokenizer_dir), padding_side="right").padding_side == "right"
    # a tokenizer without a pad token gets pad = eos
    cfg = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    cfg["pad_token"] = None
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    (tmp_path / "tokenizer.json").write_bytes((tokenizer_dir / "tokenizer.json").read_bytes())
    tok = load_tokenizer(str(tmp_path))
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"


def test_load_tokenizer_missing_folder_is_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot load"):
        load_tokenizer(str(tmp_path / "nope"))


def test_add_sid_tokens_sorted_string_ids_and_encoding(fresh_tokenizer, sample_paths):
    tok = fresh_tokenizer()
    index = read_index(sample_paths["index"])
    ext = add_sid_tokens(tok, index)
    assert ext.original_vocab_size == 151665
    assert ext.new_vocab_size == len(tok) == 151665 + 560
    expected = sorted({t for toks in index.values() for t in toks})
    assert list(ext.added_tokens) == expected
    assert expected[:3] == ["<a_104>", "<a_107>", "<a_108>"]  # string order, not numeric
    assert tok.convert_tokens_to_ids(expected) == list(range(151665, 151665 + 560))
    ids = tok.encode("### Response:\n" + "<a_236><b_231><c_226>\n", add_special_tokens=False)
    sid = tok.convert_tokens_to_ids(["<a_236>", "<b_231>", "<c_226>"])
    assert ids == [14374, 5949, 510, *sid, 198]
    # added as regular (non-special) tokens
    assert not any(tok.added_tokens_decoder[i].special for i in sid)
    # idempotent: a tokenizer that already has them (e.g. an official checkpoint's) gains nothing
    again = add_sid_tokens(tok, index)
    assert again.added_tokens == () and again.new_vocab_size == again.original_vocab_size == len(tok)


def test_partial_extension_adds_only_missing(fresh_tokenizer):
    tok = fresh_tokenizer()
    add_sid_tokens(tok, {"0": ["<a_5>"]})
    ext = add_sid_tokens(tok, {"0": ["<a_5>", "<b_1>"], "1": ["<a_10>", "<b_1>"]})
    assert ext.added_tokens == ("<a_10>", "<b_1>")
    assert tok.convert_tokens_to_ids(["<a_5>", "<a_10>", "<b_1>"]) == [151665, 151666, 151667]


def test_sid_token_ids_requires_extension(fresh_tokenizer, sid_tokenizer):
    with pytest.raises(DataError, match=r"^idx\.json: tokenizer lacks SID tokens \(e\.g\. <a_236>"):
        sid_token_ids(fresh_tokenizer(), ["<a_236>"], source="idx.json")
    assert sid_token_ids(sid_tokenizer, ["<a_236>"]) == {
        "<a_236>": sid_tokenizer.convert_tokens_to_ids("<a_236>")
    }


def test_suffix_is_newline_id(sid_tokenizer):
    assert suffix_ids(sid_tokenizer) == (198,)


def test_qwen2_folder_loads_without_torch_and_like_autotokenizer(tmp_path):
    """A Qwen2 folder skips AutoTokenizer (which imports torch) and still gives its class and ids."""
    import subprocess
    import sys

    code = ("import sys; from sidcore.data.tokenizer import load_tokenizer; tok = load_tokenizer('bundled'); "
            "print(type(tok).__name__, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["Qwen2Tokenizer", "False"]

    from transformers import AutoTokenizer

    tok = load_tokenizer("bundled", padding_side="left")
    ref = AutoTokenizer.from_pretrained(str(bundled_tokenizer_dir()), padding_side="left")
    assert type(tok) is type(ref) and len(tok) == len(ref)
    tok.add_tokens(["<a_7>", "<b_12>"], special_tokens=False)
    tok.save_pretrained(str(tmp_path))
    ref = AutoTokenizer.from_pretrained(str(tmp_path), padding_side="left")
    text = "### Response:\n<a_7><b_12>\n 世界 Industrial & Scientific"
    assert tok.encode(text, add_special_tokens=False) == ref.encode(text, add_special_tokens=False)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "Qwen2Tokenizer"
