"""``sid baseline``: a short run on the bundled sample writes a run folder that `sid report` summarises,
whose checkpoint reloads to the same test metrics and feeds the `sasrec` reward; bad input is one
line, exit 1, nothing written."""

from __future__ import annotations

import csv as _csv
import json
import shutil

import numpy as np
import pytest

from sidcore.cli import main
from sidcore.data.minionerec import bundled_data_dir

BASE = ["baseline", "gru4rec", "--data-dir", "bundled", "--train-split", "valid", "--test-histories",
        "--select", "holdout", "--epochs", "2", "--hidden-factor", "8", "--batch-size", "64"]


def _run(capsys, *args):
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_baseline_run_folder_report_and_reward(tmp_path, capsys):
    out = tmp_path / "gru"
    code, stdout, err = _run(capsys, *BASE, "--out", str(out))
    assert code == 0, err
    assert "test (200 rows, full ranking)" in stdout
    for name in ("config.resolved.yaml", "metrics.jsonl", "eval_predictions.metrics.json", "baseline.msgpack",
                 "baseline.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "eval_predictions.metrics.json").read_text())
    assert sorted(metrics["hr"], key=int) == ["1", "3", "5", "10", "20", "50"]
    assert metrics["n_samples"] == 200 and "hr" in metrics["stderr"]
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs] == [1, 2] and all("eval/ndcg@20" in r for r in epochs)

    code, _, err = _run(capsys, "report", str(out), "--out", str(tmp_path / "report"))
    assert code == 0, err
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["runs"][0]["metrics"]["hr@10"] == pytest.approx(metrics["hr"]["10"])
    assert summary["runs"][0]["baseline"]["hr@10"] == pytest.approx(metrics["popularity_baseline"]["hr"]["10"])

    # the checkpoint reloads to the same test ranking
    from sidcore.baselines.checkpoint import load_checkpoint
    from sidcore.baselines.data import load_splits
    from sidcore.baselines.train import _rank_fn, evaluate
    from flax import nnx

    model, record = load_checkpoint(out)
    assert record["model"] == "gru4rec" and record["item_num"] == 3686
    test = load_splits("bundled", "Industrial_and_Scientific", train_split="valid", test_histories=True,
                       select="holdout", seq_len=10)["test"]
    graphdef, params = nnx.split(model, nnx.Param)
    means, _ = evaluate(_rank_fn(graphdef), params, test)
    for k, v in metrics["ndcg"].items():
        assert means[f"ndcg@{k}"] == pytest.approx(v, abs=1e-7)

    # ... and is what the sasrec reward loads
    import sid_rewards
    from sidcore.interfaces import RewardGroup
    from sidcore.plugins import load_plugins

    spec = load_plugins(entry_points=False, extra=[("rewards", sid_rewards)], strict=True).registry.get("reward", "sasrec")
    reward = spec.build(spec.config(checkpoint=str(out)))
    sids = record["item_sids"]
    values = reward(RewardGroup(sample_id=0, target_sid=sids[5], completions=(sids[5], sids[6]),
                                scores=np.zeros(2, np.float32), history_items=(1, 2, 3)))
    assert values.dtype == np.float32 and np.isfinite(values).all()


def test_baseline_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    code, _, err = _run(capsys, *BASE[:3], str(tmp_path / "missing"), *BASE[4:], "--out", str(out))
    assert code == 1 and err.count("\n") == 1 and err.startswith("Error: ") and "file not found" in err
    assert not out.exists()
    code, _, err = _run(capsys, "baseline", "sasrec", "--data-dir", "bundled", "--train-split", "valid",
                        "--select", "valid", "--out", str(out))
    assert code == 1 and "--select valid" in err and err.count("\n") == 1
    code, _, err = _run(capsys, "baseline", "sasrec", "--out", str(out))  # bundled-full has no train split
    assert code == 1 and "has no train split: use --train-split valid" in err and err.count("\n") == 1
    # an item id outside the catalog names the file, line and key
    data = tmp_path / "data"
    shutil.copytree(bundled_data_dir(), data)
    csv = data / "valid" / "Industrial_and_Scientific_5_2016-10-2018-11.csv"
    with csv.open(newline="", encoding="utf-8") as fh:
        rows = list(_csv.reader(fh))
    rows[1][4] = "99999"  # item_id of the first record (file line 2)
    with csv.open("w", newline="", encoding="utf-8") as fh:
        _csv.writer(fh).writerows(rows)
    code, _, err = _run(capsys, "baseline", "caser", "--data-dir", str(data), "--train-split", "valid",
                        "--select", "none", "--out", str(out))
    assert code == 1 and f"{csv.name}:2 [item_id]: item id 99999 is outside the catalog" in err
    assert not out.exists()
