"""Inputs that were accepted and then did nothing, or something wrong (issue 19, items 3, 4, 5, 7's
``sid tpu`` part and 9): each is refused with exit code 1 (2 for usage) and one ``Error:`` line naming
the key, file or folder, and nothing that was there before changes.

Everything runs in-process through `sidcore.cli.main` (as the console script) or one reader, so the
whole file takes seconds: none of these checks needs jax.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import lzma
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from sidcore.cli import main
from sidcore.data.minionerec import bundled_data_dir, read_index, read_items, split_paths
from sidcore.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "smoke" / "tiny.yaml"
CAT = "Industrial_and_Scientific"


def tree_digest(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `folder` (links by target text)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def sid(capsys, *args: str) -> tuple[int, str, str]:
    """Run the console script in-process: (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    """The one ``Error:`` line (and no traceback)."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working folder holding an earlier run's files, hashed by the test before and after."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "config.resolved.yaml").write_text("seed: 1\n")
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    return tmp_path


# ------------------------------------------------------------------------------------------
# item 5 / 9: values checked when the config loads
# ------------------------------------------------------------------------------------------

CONFIG_CASES = [
    ("train.save_best_metric=bogus", "train.save_best_metric: 'bogus' is never reported (expected eval_loss or "
     "<metric>@K); choose one of eval_loss, hr@1, hr@5, hr@10"),
    ("train.save_best_metric=hr@100", "train.save_best_metric: 'hr@100' is never reported; choose one of"),
    ("model.overrides.hidden_sise=64", "model.overrides.hidden_sise: unknown key (did you mean: hidden_size"),
    ("model.overrides.vocab_size=99", "model.overrides.vocab_size: set by the tokenizer"),
    ("model.overrides.num_hidden_layers=two", "model.overrides.num_hidden_layers: expected int, got 'two'"),
    ("model.preset=qwen2_5_05b", "model.preset: unknown preset 'qwen2_5_05b' (did you mean: qwen2_5_0_5b"),
    ("data.eval_max_len=4096", "data.eval_max_len: 4096 exceeds the largest eval.prefill_buckets entry (2560)"),
    ("train.learning_rate=.inf", "train.learning_rate: expected a finite number, got inf"),
    ("rl.temperature=.inf", "rl.temperature: expected a finite number, got inf"),
    ("optimizer.weight_decay=.inf", "optimizer.weight_decay: expected a finite number, got inf"),
    ("train.learning_rate=-1", "train: 'learning_rate' must be > 0: -1.0"),
    ("seed=-1", "seed: expected an integer in 0 .. 2**32-1, got -1"),
    ("output_dir=", "output_dir: empty"),
    ("output_dir=runs/a#b", "output_dir: 'runs/a#b' contains '#'"),
    ("checkpoint_uri=runs/c#1", "checkpoint_uri: 'runs/c#1' contains '#'"),
]


@pytest.mark.parametrize("override,message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_values_that_did_nothing_are_refused(capsys, workdir, override, message):
    before = tree_digest(workdir)
    code, out, err = sid(capsys, "config", "show", "--config", str(TINY), override)
    line = error_line(err)
    assert code == 1 and out == ""
    assert line.startswith(f"Error: command-line override '{override}': "), line
    assert message in line, line
    assert tree_digest(workdir) == before


def test_decoding_best_metric_needs_the_decoding_eval(capsys, workdir):
    before = tree_digest(workdir)
    code, _, err = sid(capsys, "config", "show", "--config", str(TINY), "run_mode=train", "train.save_best=true",
                       "train.eval_steps=5", "train.save_best_metric=hr@10")
    assert code == 1 and "train.save_best_metric=hr@10 needs the decoding eval during training" in error_line(err)
    assert tree_digest(workdir) == before
    # the same metric in train_eval is fine, and so is eval_loss in train
    assert sid(capsys, "config", "show", "--config", str(TINY), "train.save_best_metric=ndcg_item@5")[0] == 0
    assert sid(capsys, "config", "show", "--config", str(TINY), "run_mode=train", "train.eval_steps=5")[0] == 0


def test_model_name_lists_match_the_model_layer():
    """`sidcore.config.values` lists the presets and override keys without importing jax."""
    import attrs

    from sidcore.config.values import MODEL_OVERRIDES, MODEL_PRESETS
    from sidcore.model.config import PRESETS, Qwen2Config

    assert set(MODEL_PRESETS) == set(PRESETS)
    assert set(MODEL_OVERRIDES) == {f.name for f in attrs.fields(Qwen2Config)} - {"vocab_size"}


# ------------------------------------------------------------------------------------------
# item 9: messages
# ------------------------------------------------------------------------------------------


def test_non_utf8_config_is_one_line_and_validate_checks_the_rest(capsys, workdir):
    cfgs = workdir / "cfgs"
    cfgs.mkdir()
    shutil.copy(TINY, cfgs / "good.yaml")
    (cfgs / "good.yaml").write_text((cfgs / "good.yaml").read_text().replace("../base.yaml",
                                                                             str(ROOT / "configs" / "base.yaml")))
    (cfgs / "bad.yaml").write_bytes(b"seed: 1\noutput_dir: caf\xe9\n")
    (cfgs / "zlast.yaml").write_text("seed: 2\n")
    before = tree_digest(workdir)
    code, _, err = sid(capsys, "config", "validate", str(cfgs / "bad.yaml"))
    assert code == 1 and error_line(err) == f"Error: {cfgs / 'bad.yaml'}: not UTF-8 text (byte 0xe9 at offset 23)"
    code, out, err = sid(capsys, "config", "validate", str(cfgs))
    assert code == 1 and "Traceback" not in err
    assert f"ok  {cfgs / 'good.yaml'}" in out and f"ok  {cfgs / 'zlast.yaml'}" in out  # the rest were checked
    assert f"FAIL {cfgs / 'bad.yaml'}: not UTF-8 text" in err
    assert error_line(err) == "Error: 1 of 3 config file(s) invalid"
    assert tree_digest(workdir) == before


def test_report_out_that_is_a_file(capsys, workdir):
    (workdir / "notes.txt").write_text("mine\n")
    before = tree_digest(workdir)
    code, _, err = sid(capsys, "report", "--out", "notes.txt", "runs/a")
    assert code == 2
    assert error_line(err) == ("Error: --out notes.txt: is a file, not a folder; give a folder for the report "
                               "(it is created)")
    assert tree_digest(workdir) == before


def test_npy_that_is_not_npy_has_no_unsafe_hint(capsys, workdir):
    (workdir / "x.txt").write_text("1 2 3\n4 5 6\n")
    np.save(workdir / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    before = tree_digest(workdir)
    code, _, err = sid(capsys, "index", "build", "--embeddings", "x.txt", "--data-dir", str(bundled_data_dir()),
                       "--category", CAT, "--out", "out")
    line = error_line(err)
    assert code == 1 and line == ("Error: x.txt: not a .npy file (no NumPy header); write the embeddings with "
                                  "numpy.save (sid index embed does)")
    code, _, err = sid(capsys, "index", "build", "--embeddings", "obj.npy", "--data-dir", str(bundled_data_dir()),
                       "--category", CAT, "--out", "out")
    assert code == 1 and "holds Python objects, which sid does not unpickle" in error_line(err)
    assert "unsafe" not in err and "allow_pickle" not in err
    assert tree_digest(workdir) == before and not (workdir / "out").exists()


def _one_checkpoint(root: Path) -> None:
    from sid_stores.config import MsgpackConfig
    from sid_stores.msgpack_store import build

    build(MsgpackConfig(), uri=str(root)).save("last", {"params": {"w": np.arange(4, dtype=np.float32)}},
                                               {"step": 3})


def test_file_uri_is_a_source_too(capsys, workdir):
    _one_checkpoint(workdir / "src")
    before = tree_digest(workdir / "src")
    code, out, err = sid(capsys, "checkpoint", "copy", f"file://{workdir / 'src'}#last", "dst")
    assert code == 0, err
    assert out.startswith(f"copied {workdir / 'src'}#last -> dst#last sha256=")
    assert tree_digest(workdir / "dst") == before  # byte-identical copy
    assert tree_digest(workdir / "src") == before


def test_sha256_mismatch_says_what_to_do(capsys, workdir):
    _one_checkpoint(workdir / "src")
    payload = workdir / "src" / "sft_state_last.msgpack"
    data = bytearray(payload.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    payload.write_bytes(bytes(data))
    before = tree_digest(workdir)
    code, _, err = sid(capsys, "checkpoint", "copy", "src#last", "dst")
    line = error_line(err)
    assert code == 1 and "sft_state_last.msgpack: sha256 mismatch (corrupt payload); move the checkpoint" in line
    assert "train.resume_fallback=true" in line
    assert tree_digest(workdir) == before


# ------------------------------------------------------------------------------------------
# item 3: tokenizer folders
# ------------------------------------------------------------------------------------------


def _word_level_tokenizer(folder: Path) -> None:
    """A fast tokenizer whose vocabulary is two words: it cannot encode the prompt template."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "Below": 1}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "<unk>", "eos_token": "<unk>"}))


def test_tokenizer_folders_that_cannot_encode_prompts(workdir):
    from sidcore.data.tokenizer import load_tokenizer

    model = workdir / "model"  # weights' folder without tokenizer files
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2", "tokenizer_class": "Qwen2Tokenizer"}))
    broken = workdir / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "qwen2",\n "hidden_size": }\n')
    (broken / "tokenizer.json").write_text("{}")
    _word_level_tokenizer(workdir / "words")
    before = tree_digest(workdir)
    with pytest.raises(DataError) as exc:
        load_tokenizer(str(model))
    assert str(exc.value) == (f"{model}: no tokenizer files (missing tokenizer.json or vocab.json + merges.txt or "
                              "tokenizer.model); point data.tokenizer at the folder that has them, or "
                              "data.tokenizer=bundled for the Qwen2.5 tokenizer")
    with pytest.raises(DataError, match=r"broken/config.json:2: invalid JSON \(Expecting value\); the model config "
                                        "is broken"):
        load_tokenizer(str(broken))
    with pytest.raises(DataError, match=r"cannot encode the prompt template \(2 token\(s\) in its vocabulary"):
        load_tokenizer(str(workdir / "words"))
    assert tree_digest(workdir) == before


# ------------------------------------------------------------------------------------------
# item 4: data consistency
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["copy", "symlink", "xz", "reordered"])
def test_train_split_holding_the_test_rows_is_a_leak(capsys, workdir, how):
    test = split_paths(bundled_data_dir(), CAT)["test"]
    train = workdir / ("train.csv.xz" if how == "xz" else "train.csv")
    if how == "copy":
        shutil.copy(test, train)
    elif how == "symlink":
        train.symlink_to(test)
    elif how == "xz":
        train.write_bytes(lzma.compress(test.read_bytes()))
    else:
        head, *rows = test.read_text().splitlines(keepends=True)
        train.write_text(head + "".join(reversed(rows)))
    before = tree_digest(workdir)
    code, _, err = sid(capsys, "config", "show", "--config", str(TINY), f"data.train_file={train}")
    assert code == 1
    assert f"data.train_file ({train}) holds the test split's rows ({test}: a copy or a link)" in error_line(err)
    assert tree_digest(workdir) == before


def _bad_csv(path: Path) -> tuple[int, str, str]:
    """The bundled valid CSV with line 4's item_id replaced by an item of another SID; (line, that
    item id, its index.json SID)."""
    src = split_paths(bundled_data_dir(), CAT)["valid"]
    rows = list(csv.reader(src.read_text().splitlines()))
    index = read_index(split_paths(bundled_data_dir(), CAT)["index"])
    col = rows[0].index("item_id")
    other = next(k for k, v in index.items() if "".join(v) != "".join(index[rows[3][col]]))
    rows[3][col] = other
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return 4, other, "".join(index[other])


def test_csv_item_ids_are_checked_against_index(workdir):
    from sidcore.config.schema import DataConfig
    from sidcore.data.tasks import training_rows

    bad = workdir / "valid.csv"
    line, item_id, index_sid = _bad_csv(bad)
    p = split_paths(bundled_data_dir(), CAT)
    d = DataConfig(train_file=str(bad), info_file=str(p["info"]), sid_index_path=str(p["index"]))
    before = tree_digest(workdir)
    with pytest.raises(DataError) as exc:
        training_rows(d)
    msg = str(exc.value)
    assert msg.startswith(f"{bad}:{line} [item_id]: item id {item_id} has SID {index_sid} in index.json, but "
                          "the row says <"), msg
    assert "\n" not in msg and tree_digest(workdir) == before


def test_duplicate_index_keys_and_items_missing_from_item_json(workdir, caplog):
    from sidcore.data.consistency import check_items_cover

    idx = workdir / "x.index.json"
    idx.write_text('{"0": ["<a_1>", "<b_2>"],\n "1": ["<a_1>", "<b_3>"],\n "0": ["<a_2>", "<b_2>"]}')
    with pytest.raises(DataError, match=r"x.index.json \[0\]: duplicate key \(JSON would keep only the last"):
        read_index(idx)
    index = {"0": ("<a_1>",), "1": ("<a_2>",), "2": ("<a_3>",)}
    items_path = workdir / "x.item.json"
    items_path.write_text(json.dumps({"0": {"title": "A", "description": "", "brand": "", "categories": ""}}))
    items = read_items(items_path)
    with caplog.at_level(logging.WARNING, logger="sidcore.data.consistency"):
        check_items_cover(items_path, index, items)
    assert "2 of 3 index.json item(s) have no entry; the alignment task skips them" in caplog.text
    with pytest.raises(DataError, match=r"x.item.json: 1 training target item\(s\) have no entry, which "
                                        r"fusion_seq_rec needs for their title \(e.g. item id 2\)"):
        check_items_cover(items_path, index, items, needed=["0", "2", "2"], task="fusion_seq_rec")


def test_embed_features_field_no_item_has(capsys, workdir):
    items = split_paths(bundled_data_dir(), CAT)["items"]
    (workdir / "model").mkdir()
    before = tree_digest(workdir)
    code, _, err = sid(capsys, "index", "embed", "--model", "model", "--items", str(items), "--out", "e.npy",
                       "--features", "title,descripton")
    assert code == 1
    assert error_line(err) == (f"Error: {items}: no item has the field 'descripton' (did you mean: description?) "
                               "(--features); fields present: brand, categories, description, title")
    assert tree_digest(workdir) == before and not (workdir / "e.npy").exists()


# ------------------------------------------------------------------------------------------
# item 7 (sid tpu): checked here before anything reaches a VM
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["run", "--tpu-name", "vm", "--config", "cfg.yaml", "train.nosuch=5"],
     "command-line override 'train.nosuch=5': train.nosuch: unknown key"),
    (["run", "--tpu-name", "vm", "--config", "cfg.yaml", "train.learning_rate=-1"],
     "command-line override 'train.learning_rate=-1': train: 'learning_rate' must be > 0: -1.0"),
    (["supervise", "--tpu-name", "vm", "--config", "cfg.yaml", "--optimizer", "adamw", "optimizer.ns_steps=3"],
     "optimizer.ns_steps: unknown key"),
    (["copy", "--tpu-name", "vm", "data/nope.csv", ":/root/data/"], "data/nope.csv: no such file or folder"),
    (["copy", "--tpu-name", "vm", "runs", ":/root/runs"], "runs: is a folder; add --recurse to copy it"),
    (["sync-env", "--tpu-name", "vm", "--set", "env_file=nope.env"], "nope.env: env file not found"),
], ids=["run-unknown-key", "run-negative-lr", "supervise-option-of-another-optimizer", "copy-missing",
        "copy-folder", "sync-env-missing"])
def test_tpu_dry_runs_check_locally(capsys, workdir, args, message):
    (workdir / "cfg.yaml").write_text(f"base: {TINY}\nlauncher: {{name: tpu_vm, tpu_name: vm}}\n")
    before = tree_digest(workdir)
    code, out, err = sid(capsys, "tpu", args[0], "--dry-run", *args[1:])
    assert code == 1 and message in error_line(err)
    assert "gcloud" not in out + err  # no plan was printed, nothing would have run
    assert tree_digest(workdir) == before


def test_tpu_run_dry_run_of_a_valid_config_prints_the_plan(capsys, workdir):
    (workdir / "cfg.yaml").write_text(f"base: {TINY}\n")
    code, _, err = sid(capsys, "tpu", "run", "--dry-run", "--tpu-name", "vm", "--config", "cfg.yaml",
                       "--optimizer", "optax_muon", "optimizer.ns_steps=3", "train.learning_rate=1e-4")
    assert code == 0, err
    assert "gcloud alpha compute tpus tpu-vm ssh root@vm" in err and "optimizer.ns_steps=3" in err
