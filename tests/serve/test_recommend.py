"""``sid recommend``: the eval decoder's answers, every input form, the filters, bad lines, resume."""

from __future__ import annotations

import copy
import json
import lzma
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import BATCH, BEAMS, ROOT, TEST_CSV, TOP_K, sid

pytestmark = pytest.mark.slow


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def write_jsonl(path, recs):
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in recs))
    return Path(path)


def run(recommender, tmp_path, recs_or_path, *, name="out.jsonl", **kw):
    from sidcore.serve.batch import run_recommend

    src = recs_or_path if isinstance(recs_or_path, Path) else write_jsonl(tmp_path / "in.jsonl", recs_or_path)
    out = tmp_path / name
    kw = {"on_bad_line": "error", "overwrite": False, "history_field": None, "source": "t", **kw}
    counts = run_recommend(recommender, input_path=src, out=out, **kw)
    return read_jsonl(out), counts


def test_equals_eval_decoder_on_test_rows(recommender, loaded, eval_rows, tmp_path):
    """Same prompts, beams and scores as the `sid run` eval (its eval_predictions.json, and the
    Evaluator run here on the same weights for the scores the JSON does not hold)."""
    from sidcore.data.tasks import build_eval_prompts
    from sidcore.eval.evaluator import Evaluator

    users = [{"user_id": f"u{i}", "history_item_sid": h} for i, (h, _) in enumerate(eval_rows)]
    out, counts = run(recommender, tmp_path, users)
    assert counts["users"] == len(eval_rows) == 8
    prompts = build_eval_prompts(loaded.cfg.data, loaded.bundle.tokenizer, split="test", seed=loaded.cfg.seed)
    assert recommender.prompt_ids([recommender.parse(u) for u in users]) == [p.input_ids for p in prompts]
    ev = Evaluator(loaded.cfg.eval, compute_dtype=loaded.cfg.jax.compute_dtype, bundle=loaded.bundle,
                   decoder=recommender.decoder, catalog=loaded.catalog, metrics=[], prompts=prompts)
    preds, _ = ev.predict(loaded.params)
    for i, (rec, (_, predicted)) in enumerate(zip(out, eval_rows)):
        assert rec["line"] == i + 1 and rec["user_id"] == f"u{i}"
        assert [it["sid"] for it in rec["items"]] == predicted[:TOP_K] == preds[i][:TOP_K]  # same order
        scores = [it["score"] for it in rec["items"]]
        np.testing.assert_allclose(scores, ev.scores[i][:TOP_K], rtol=1e-6, atol=1e-6 * abs(scores[0]))
        assert scores == sorted(scores, reverse=True) and all(np.isfinite(scores))


def test_input_forms_agree(recommender, loaded, tmp_path):
    """The same histories as item ids (int and str), SIDs, titles, CSV (MiniOneRec's test file) and .xz."""
    from sidcore.data.minionerec import read_csv

    rows = read_csv(TEST_CSV)[:6]
    titles = {e.item_id: e.title for e in loaded.info}
    by_sid, by_id, by_title = [], [], []
    for r in rows:
        by_sid.append({"user_id": r.user_id, "history_item_sid": list(r.history_item_sid)})
        by_id.append({"user_id": r.user_id, "history_item_id": [i if k % 2 else str(i)
                                                                for k, i in enumerate(r.history_item_id)]})
        by_title.append({"user_id": r.user_id, "history_item_title": [titles[str(i)] for i in r.history_item_id]})
    want, _ = run(recommender, tmp_path, by_sid, name="sid.jsonl")
    for name, recs in (("id.jsonl", by_id), ("title.jsonl", by_title)):
        got, _ = run(recommender, tmp_path, recs, name=name)
        assert got == want, name
    csv_lines = TEST_CSV.read_text().splitlines(keepends=True)
    csv_path = tmp_path / "h.csv"
    csv_path.write_text("".join(csv_lines[:7]))  # header + 6 rows (one physical line each)
    got, _ = run(recommender, tmp_path, csv_path, name="csv.jsonl")
    assert [g["items"] for g in got] == [w["items"] for w in want]
    assert [g["line"] for g in got] == [2, 3, 4, 5, 6, 7] and got[0]["user_id"] == rows[0].user_id
    xz = tmp_path / "h.csv.xz"
    xz.write_bytes(lzma.compress(csv_path.read_bytes()))
    got_xz, _ = run(recommender, tmp_path, xz, name="xz.jsonl")
    assert got_xz == got
    # --history-field picks the id column of the CSV; same histories, same answers
    got_id, _ = run(recommender, tmp_path, csv_path, name="csv_id.jsonl", history_field="history_item_id")
    assert got_id == got


def test_filters(loaded, recommender, eval_rows, tmp_path):
    from sidcore.serve.engine import Recommender

    users = [{"history_item_sid": h} for h, _ in eval_rows[:4]]
    base, _ = run(recommender, tmp_path, users, name="base.jsonl")
    # allow + deny: a restricted catalog (a smaller trie, built once), not a post-filter of the beams
    allowed = {it["item_id"] for rec in base for it in rec["items"]} | {e.item_id for e in loaded.info[:20]}
    denied = {rec["items"][0]["item_id"] for rec in base}
    r = Recommender(loaded, num_beams=BEAMS, top_k=TOP_K, batch_sizes=[BATCH], allow=allowed, deny=denied)
    got, _ = run(r, tmp_path, users, name="filtered.jsonl")
    sid_of = {e.item_id: e.sid for e in loaded.info}
    assert r.catalog_size == len({sid_of[i] for i in allowed - denied})  # SIDs with an item left
    for g, b in zip(got, base):
        items = [it["item_id"] for it in g["items"]]
        assert len(items) == TOP_K and set(items) <= allowed - denied
        kept = [it for it in b["items"] if it["item_id"] not in denied]  # still reachable: same relative order
        assert [it["item_id"] for it in g["items"] if it["item_id"] in {k["item_id"] for k in kept}] == \
            [it["item_id"] for it in kept if it["item_id"] in items]
    # exclude history (per user here; --exclude-history for every user): the same beams, history items dropped
    first = base[0]["items"]
    user = {"history_item_id": [first[0]["item_id"], first[1]["item_id"]]}
    hist = set(user["history_item_id"])
    plain_all = recommender.recommend([recommender.parse({**user, "top_k": BEAMS})])[0]["items"]
    out, _ = run(recommender, tmp_path, [{**user, "exclude_history": True}], name="excl.jsonl")
    assert out[0]["items"] == [it for it in plain_all if it["item_id"] not in hist][:TOP_K]
    assert not hist & {it["item_id"] for it in out[0]["items"]}
    assert {it["item_id"] for it in plain_all[:TOP_K]} & hist  # the history items were in the unfiltered answer
    excl = copy.copy(recommender)
    excl.exclude_history = True  # the --exclude-history default, same compiled decoder
    assert excl.recommend([excl.parse(user)]) == recommender.recommend([recommender.parse(
        {**user, "exclude_history": True})])


def test_filter_files_and_beams(loaded, tmp_path):
    from sidcore.errors import ConfigError, DataError
    from sidcore.serve.engine import Recommender, read_item_list

    known = [e.item_id for e in loaded.info]
    f = tmp_path / "allow.txt"
    f.write_text(f"# in stock\n{known[0]}\n\n{known[1]}  # two\n")
    assert read_item_list(str(f), known) == {known[0], known[1]}
    f.write_text(f"{known[0]}\nnope-42\n")
    with pytest.raises(DataError, match=r"allow.txt:2: unknown item id 'nope-42'"):
        read_item_list(str(f), known)
    with pytest.raises(ConfigError, match="exceeds the 2 catalog SIDs left"):
        Recommender(loaded, num_beams=BEAMS, top_k=TOP_K, allow={known[0], known[1]})


def test_bad_lines(recommender, tmp_path):
    from sidcore.errors import DataError

    good = {"history_item_id": ["3466"]}
    src = tmp_path / "bad.jsonl"
    src.write_text("\n".join([json.dumps(good), '{"history_item_id": [3466', json.dumps({"history_item_id": [99999]}),
                              json.dumps({"user_id": "e", "history_item_sid": []}), "[1, 2]",
                              json.dumps({"history_item_id": [1], "colour": 1}), "", json.dumps(good)]) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: malformed JSON.*\(4 more bad lines"):
        run(recommender, tmp_path, src)
    assert list(tmp_path.glob("out.jsonl*")) == []  # nothing written, not even a partial file
    out, counts = run(recommender, tmp_path, src, on_bad_line="skip")
    assert counts == {"lines": 7, "users": 2, "bad": 5, "short": 0, "resumed": 0}
    assert [r["line"] for r in out] == [1, 2, 3, 4, 5, 6, 8]  # input order; the blank line 7 is no record
    errors = {r["line"]: r["error"] for r in out if "error" in r}
    assert "malformed JSON" in errors[2] and "history_item_id[0]: unknown item id 99999" in errors[3]
    assert "history_item_sid: empty history" in errors[4] and "expected a JSON object" in errors[5]
    assert "colour: unknown key" in errors[6] and out[3]["user_id"] == "e"
    assert out[0]["items"] == out[-1]["items"] and len(out[0]["items"]) == TOP_K


def test_resume_from_partial_output(recommender, tmp_path):
    """A .part holding 2 chunks and a torn line: the rerun writes each input line exactly once."""
    from sidcore.serve import batch

    users = [{"user_id": str(i), "history_item_id": [str(3466 - i)]} for i in range(10)]
    want, _ = run(recommender, tmp_path, users, name="want.jsonl", chunk=4)
    src = tmp_path / "in.jsonl"
    out = tmp_path / "out.jsonl"
    part = tmp_path / "out.jsonl.part"
    job = batch.fingerprint(src, {"source": "t", "num_beams": BEAMS, "top_k": TOP_K, "exclude_history": False,
                                  "catalog_size": recommender.catalog_size, "history_field": None})
    lines = [json.dumps({"sid_recommend_job": job})] + [json.dumps(r) for r in want[:6]]
    part.write_text("\n".join(lines) + "\n" + json.dumps(want[6])[:20])  # killed mid-write
    got, counts = run(recommender, tmp_path, src, chunk=4)
    assert got == want and counts["resumed"] == 6 and not part.exists()
    # an existing output is never replaced silently; a .part of another job is refused
    from sidcore.errors import UsageError

    with pytest.raises(UsageError, match="exists; pass --overwrite"):
        run(recommender, tmp_path, src)
    other = tmp_path / "out2.jsonl"
    (tmp_path / "out2.jsonl.part").write_text(json.dumps({"sid_recommend_job": {**job, "top_k": 3}}) + "\n")
    with pytest.raises(UsageError, match="different job"):
        batch.run_recommend(recommender, input_path=src, out=other, on_bad_line="error", overwrite=False,
                            history_field=None, source="t")
    got, _ = run(recommender, tmp_path, src, name="out2.jsonl", overwrite=True)
    assert got == want


def test_cli_kill_and_resume(tiny_run, recommender, tmp_path):
    """A real `sid recommend` killed after its first chunk; the same command finishes the job."""
    lines = TEST_CSV.read_text().splitlines(keepends=True)
    src = tmp_path / "h.csv"
    src.write_text("".join(lines[:101]))  # 100 users = 2 chunks of 64 at --batch-size 4
    out = tmp_path / "r.jsonl"
    args = ["recommend", "--from", str(tiny_run), "--input", str(src), "--out", str(out), "--top-k", str(TOP_K),
            "--num-beams", str(BEAMS), "--batch-size", str(BATCH)]
    env = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu", "SID_PROGRESS": "log"}
    proc = subprocess.Popen([sys.executable, "-m", "sidcore.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    part = tmp_path / "r.jsonl.part"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if part.exists() and part.read_text().count("\n") > 1:  # header + at least one chunk
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and part.exists()
    done = part.read_text().count("\n") - 1
    assert 0 < done < 100
    res = sid(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"{done} lines from an earlier attempt" in res.stdout
    got = read_jsonl(out)
    assert [r["line"] for r in got] == list(range(2, 102))  # every line once, in input order
    fresh, _ = run(recommender, tmp_path, src, name="fresh.jsonl")  # uninterrupted, same shapes
    assert fresh == got
    # the CLI's one-line errors: existing --out, a bad line (exit 1, file:line, no traceback)
    res = sid(*args)
    assert res.returncode == 2 and "exists; pass --overwrite" in res.stderr and "Traceback" not in res.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"history_item_id": ["3466"]}\n{"history_item_id": ["nope"]}\n')
    res = sid("recommend", "--from", str(tiny_run), "--input", str(bad), "--out", str(tmp_path / "b.jsonl"))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert f"Error: {bad}:2: history_item_id[0]: unknown item id 'nope'" in res.stderr
    assert not list(tmp_path.glob("b.jsonl*"))


def test_from_hf_folder_and_checkpoint_file(tiny_run, loaded, recommender, eval_rows, tmp_path):
    """`--from` an exported HF folder (+ --config) and a checkpoint file answer like the run dir."""
    from conftest import SMOKE
    from sidcore.export.hf import export_run
    from sidcore.serve.engine import Recommender
    from sidcore.serve.load import load

    users = [recommender.parse({"history_item_sid": h}) for h, _ in eval_rows[:4]]
    want = recommender.recommend(users)
    hf = export_run(loaded.cfg, loaded.plugins, tmp_path / "hf")
    for source in (str(hf), str(tiny_run / "sft_state_last.msgpack")):
        other = load(source, loaded.plugins, config=SMOKE)
        got = Recommender(other, num_beams=BEAMS, top_k=TOP_K, batch_sizes=[BATCH]).recommend(users)
        for g, w in zip(got, want):
            assert [it["item_id"] for it in g["items"]] == [it["item_id"] for it in w["items"]], source
            assert [it["score"] for it in g["items"]] == pytest.approx([it["score"] for it in w["items"]],
                                                                       rel=1e-5, abs=1e-5)
    from sidcore.errors import UsageError

    with pytest.raises(UsageError, match="not a run directory; pass --config"):
        load(str(hf), loaded.plugins)
