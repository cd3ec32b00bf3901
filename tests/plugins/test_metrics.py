"""Tests of the metric plugin (`sid_metrics`): calc.py semantics on hand-computed tables."""

from __future__ import annotations

import ast
import json
import math

import numpy as np
import pytest

import sid_metrics
from sid_metrics import calc
from sid_metrics.config import TopKConfig
from sidcore.errors import DataError
from sidcore.interfaces import SidCatalog
from sidcore.plugins import load_plugins
from sidcore.testing.metrics import check_metric, check_ranking_metric

A, B, C, D, E = (f"<a_{i}><b_{i}><c_{i}>" for i in range(1, 6))
X = "<a_9><b_9><c_9>"  # not in the catalog
VALID = frozenset({A, B, C, D, E})


def _catalog(items: dict[str, tuple[str, ...]] | None = None) -> SidCatalog:
    sids = tuple(sorted(VALID))
    return SidCatalog(sids=sids, token_ids=np.zeros((len(sids), 3), np.int32), suffix_ids=(198,),
                      items_per_sid=items or {})


@pytest.fixture(scope="module")
def registry():
    return load_plugins(entry_points=False, extra=[("metrics", sid_metrics)]).registry


def _build(registry, name, **options):
    spec = registry.get("metric", name)
    return spec.build(spec.config(**options))


# Five samples, 4 beams each. Ranks and invalid counts worked out by hand:
#   1: target A, [A, B, C, D]          -> rank 0, invalid 0, scanned 1
#   2: target B, [X, C, B, X]          -> rank 2, invalid 1 (the X after the hit is not counted), scanned 3
#   3: target C, [D, E, X, A]          -> miss,   invalid 1, scanned 4
#   4: target '"D"\n ', [A, ' D\n', B, C] (D's SID quoted/padded) -> normalised to D;
#      rank 1, invalid 0, scanned 2
#   5: target E, [E, E, X, X]          -> rank 0 (duplicates occupy ranks; stop at the first), scanned 1
# topk [1, 3, 5, 10] with 4 beams -> K = [1, 3] (5 and 10 dropped).
#   HR@1   = |{1, 5}| / 5            = 0.4
#   HR@3   = |{1, 2, 4, 5}| / 5      = 0.8
#   NDCG@1 = (1 + 1) / 5             = 0.4
#   NDCG@3 = (1 + 1/log2(4) + 1/log2(3) + 1) / 5 = (2.5 + 0.6309297535714575) / 5 = 0.6261859507142915
#   invalid = 2 of 11 scanned predictions
TABLE_PREDS = [[A, B, C, D], [X, C, B, X], [D, E, X, A], [A, f" {D}\n", B, C], [E, E, X, X]]
TABLE_TARGETS = [A, B, C, f'"{D}"\n ', E]


def test_compute_hand_table():
    out = calc.compute(TABLE_PREDS, TABLE_TARGETS, VALID, topk=[1, 3, 5, 10])
    assert out["topk"] == [1, 3]
    assert out["n_samples"] == 5 and out["n_beams"] == 4
    assert out["invalid_prediction_count"] == 2
    assert out["hr"] == {"1": pytest.approx(0.4, abs=1e-15), "3": pytest.approx(0.8, abs=1e-15)}
    assert out["ndcg"]["1"] == pytest.approx(0.4, abs=1e-15)
    assert out["ndcg"]["3"] == pytest.approx(0.6261859507142915, abs=1e-15)
    assert json.loads(json.dumps(out)) == out  # plain JSON structure
    assert list(out) == ["hr", "ndcg", "topk", "n_samples", "n_beams", "invalid_prediction_count"]


def test_components_on_hand_table(registry):
    cat = _catalog()
    hr = _build(registry, "hr", topk=[1, 3, 5, 10])(TABLE_PREDS, TABLE_TARGETS, catalog=cat)
    ndcg = _build(registry, "ndcg", topk=[10, 3, 1, 3])(TABLE_PREDS, TABLE_TARGETS, catalog=cat)
    inv = _build(registry, "invalid")(TABLE_PREDS, TABLE_TARGETS, catalog=cat)
    assert hr == {"hr@1": pytest.approx(0.4), "hr@3": pytest.approx(0.8)}
    assert list(ndcg) == ["ndcg@1", "ndcg@3"]
    assert ndcg["ndcg@3"] == pytest.approx(0.6261859507142915, abs=1e-15)
    assert inv == {"invalid_prediction_count": 2.0, "invalid_fraction": pytest.approx(2 / 11)}


@pytest.mark.parametrize(
    "rank, expected",
    [(0, 1.0), (1, 0.6309297535714575), (2, 0.5), (6, 1 / 3), (14, 0.25)],  # 1/log2(rank + 2)
)
def test_ndcg_single_hit_by_rank(rank, expected):
    preds = [[B] * rank + [A] + [B] * (19 - rank)]  # 20 beams, hit at `rank`
    out = calc.compute(preds, [A], VALID, topk=[1, 3, 5, 10, 20])
    assert out["ndcg"]["20"] == pytest.approx(expected, abs=1e-12)
    for k in (1, 3, 5, 10, 20):
        hit = rank < k
        assert out["hr"][str(k)] == (1.0 if hit else 0.0)
        assert out["ndcg"][str(k)] == (pytest.approx(expected, abs=1e-12) if hit else 0.0)


def test_ndcg_is_summed_like_calc_py():
    # calc.py: sum of 1/ln(rank + 2) over samples, then / n / (1 / ln 2); same floats to the last bit.
    preds = [[B, A, C], [B, C, A], [A, B, C]]
    out = calc.compute(preds, [A, A, A], VALID, topk=[3])
    ref = (1 / math.log(3) + 1 / math.log(4) + 1 / math.log(2)) / 3 / (1.0 / math.log(2))
    assert out["ndcg"]["3"] == ref


def test_k_larger_than_beams_is_dropped_using_first_sample():
    preds = [[A, B, C], [B, A, C, D, E]]  # n_beams comes from the first sample only
    out = calc.compute(preds, [A, A], VALID)  # default topk 1, 3, 5, 10, 20, 50
    assert out["topk"] == [1, 3] and out["n_beams"] == 3
    assert set(out["hr"]) == {"1", "3"} and out["hr"]["3"] == 1.0


def test_invalid_counted_only_up_to_the_hit():
    preds = [[X, X, A, X, X], [X, B, C, D, E]]  # sample 1: 2 before the hit; sample 2 misses: 1
    assert calc.compute(preds, [A, A], VALID)["invalid_prediction_count"] == 3
    assert calc.compute([[A, X, X, X]], [A], VALID)["invalid_prediction_count"] == 0


def test_duplicate_predictions_occupy_ranks():
    out = calc.compute([[B, B, B, A, A]], [A], VALID, topk=[3, 5])
    assert out["hr"] == {"3": 0.0, "5": 1.0}
    assert out["ndcg"]["5"] == pytest.approx(1 / math.log2(5))


@pytest.mark.parametrize(
    "prediction, target, hit",
    [
        (f'"{A}"', A, True),
        (f"{A}\n", A, True),
        (f'\n"{A}"\n', A, True),
        (f'  {A}  ', A, True),
        (A, f' "{A}"\n', True),
        (A, f"{A}\n\n", True),
        (A, [f" {A}"], True),  # a list target: its first element
        (f'" {A} "', A, True),  # quotes stripped first, then whitespace
        (f' "{A}"', A, False),  # leading space protects the quote from strip('"\n')
        (f"{A}\t", A, True),
        (A, f"{A}\t", False),  # the target strip does not remove tabs
        (A.replace("b", "B"), A, False),
    ],
)
def test_normalization(prediction, target, hit):
    out = calc.compute([[prediction]], [target], VALID, topk=[1])
    assert out["hr"]["1"] == (1.0 if hit else 0.0)


def test_perfect_and_miss():
    perfect = calc.compute([[A, B], [B, A], [C, A]], [A, B, C], VALID, topk=[1, 2])
    assert perfect["hr"] == {"1": 1.0, "2": 1.0}
    # calc.py's arithmetic (sum of 1/ln 2, / n, / (1/ln 2)) lands within an ulp of 1, not always on it.
    assert perfect["ndcg"] == {"1": pytest.approx(1.0, abs=1e-15), "2": pytest.approx(1.0, abs=1e-15)}
    miss = calc.compute([[B, C], [A, C]], [A, B], VALID, topk=[1, 2])
    assert miss["hr"] == {"1": 0.0, "2": 0.0} and miss["ndcg"] == {"1": 0.0, "2": 0.0}


def test_compute_rejects_bad_shapes():
    with pytest.raises(DataError, match="2 prediction lists but 1 targets"):
        calc.compute([[A], [B]], [A], VALID)
    with pytest.raises(DataError, match="no samples"):
        calc.compute([], [], VALID)


def test_format_report():
    out = calc.compute(TABLE_PREDS, TABLE_TARGETS, VALID, topk=[1, 3])
    lines = calc.format_report(out).splitlines()
    assert lines[0].startswith("NDCG:\t[") and lines[1].startswith("HR\t[") and lines[2] == "2"
    ndcg = ast.literal_eval(lines[0].split("\t")[1])
    hr = ast.literal_eval(lines[1].split("\t")[1])
    assert ndcg == pytest.approx([0.4, 0.6261859507142915]) and hr == pytest.approx([0.4, 0.8])


# --- files ------------------------------------------------------------------------------------


def test_load_predictions_roundtrip(tmp_path):
    path = tmp_path / "eval_predictions.json"
    records = [{"input": "p", "output": t, "predict": p} for p, t in zip(TABLE_PREDS, TABLE_TARGETS)]
    path.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n")
    preds, targets = calc.load_predictions(path)
    assert preds == TABLE_PREDS and targets == TABLE_TARGETS
    assert calc.compute(preds, targets, VALID, topk=[1, 3])["hr"]["3"] == pytest.approx(0.8)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"output": "x", "predict": []}', "expected a JSON list"),
        ("[]", "no records"),
        ('[{"output": "a", "predict": ["a"]}, {"predict": ["a"]}]', "[record 1]: missing key 'output'"),
        ('[{"output": "a"}]', "[record 0]: missing key 'predict'"),
        ('[{"output": "a", "predict": "a"}]', "[record 0]: 'predict' must be a list of strings"),
        ('[{"output": "a", "predict": ["a", 3]}]', "[record 0]: 'predict' must be a list of strings"),
        ('[{"output": "a", "predict": []}]', "[record 0]: 'predict' is empty"),
        ('[{"output": 5, "predict": ["a"]}]', "[record 0]: 'output' must be a string"),
        ('[["a", ["a"]]]', "[record 0]: expected an object"),
        ('[{"output": "a",\n "predict": [}]', ":2: invalid JSON"),
    ],
)
def test_load_predictions_errors(tmp_path, content, message):
    path = tmp_path / "preds.json"
    path.write_text(content)
    with pytest.raises(DataError) as err:
        calc.load_predictions(path)
    text = str(err.value)
    assert "\n" not in text and text.startswith(str(path)) and message in text


def test_load_predictions_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        calc.load_predictions(tmp_path / "nope.json")


def test_load_valid_sids(tmp_path):
    info = tmp_path / "info.txt"
    info.write_text(f"{A}\tTitle one\t101\n {B} \tTitle two\t102\n\n")
    assert calc.load_valid_sids(info) == {A, B}


# --- item level -------------------------------------------------------------------------------

# S1 = A is a collision of items i1, i1b; B holds i2; C is listed with no items.
ITEMS = {A: ("i1", "i1b"), B: ("i2",), C: (), D: ("i4",), E: ("i5",)}
# Item expansion (hand-computed), 3 beams -> K = [1, 3]:
#   1: target i1b, [B, A, C] -> B takes rank 0, A takes ranks 1-2 (i1, i1b) -> item rank 2
#   2: target i2,  [A, X, B] -> A takes 0-1, X (invalid) takes 2, B at 3      -> item rank 3 (miss at K=3)
#   3: target i1,  [A, B, C] -> item rank 0
#   hr_item@1 = 1/3, hr_item@3 = 2/3, ndcg_item@1 = 1/3, ndcg_item@3 = (1/log2(4) + 1) / 3 = 0.5
ITEM_PREDS = [[B, A, C], [A, X, B], [A, B, C]]
ITEM_TARGETS = ["i1b", "i2", "i1"]


def test_item_level_hand_table(registry):
    cat = _catalog(ITEMS)
    hr = _build(registry, "hr_item", topk=[1, 3, 5])(ITEM_PREDS, ITEM_TARGETS, catalog=cat)
    ndcg = _build(registry, "ndcg_item", topk=[1, 3, 5])(ITEM_PREDS, ITEM_TARGETS, catalog=cat)
    assert hr == {"hr_item@1": pytest.approx(1 / 3), "hr_item@3": pytest.approx(2 / 3)}
    assert ndcg == {"ndcg_item@1": pytest.approx(1 / 3), "ndcg_item@3": pytest.approx(0.5)}
    # The SID-level view of the same samples (targets = the items' SIDs) ranks higher:
    sid_hr = _build(registry, "hr", topk=[1, 3])(ITEM_PREDS, [A, B, A], catalog=cat)
    assert sid_hr == {"hr@1": pytest.approx(1 / 3), "hr@3": 1.0}
    assert all(hr[f"hr_item@{k}"] <= sid_hr[f"hr@{k}"] for k in (1, 3))


def test_item_level_target_kind_and_errors(registry):
    hr_item = _build(registry, "hr_item")
    assert hr_item.target_kind == "item" and _build(registry, "hr").target_kind == "sid"
    with pytest.raises(DataError, match="targets look like SIDs"):
        hr_item(ITEM_PREDS, [A, B, A], catalog=_catalog(ITEMS))
    with pytest.raises(DataError, match="no items_per_sid"):
        hr_item(ITEM_PREDS, ITEM_TARGETS, catalog=_catalog())
    # An unknown item is a miss, not an error.
    out = hr_item([[A, B, C]], ["zzz"], catalog=_catalog(ITEMS))
    assert out["hr_item@3"] == 0.0


# --- registration and conformance -------------------------------------------------------------


def test_registration(registry):
    assert registry.names("metric") == ["hr", "hr_item", "invalid", "ndcg", "ndcg_item"]
    assert registry.get("metric", "hr").config is TopKConfig
    assert TopKConfig().topk == [1, 3, 5, 10, 20, 50]
    for bad in ([], [0], [3, -1], ["5"], 5):
        with pytest.raises((ValueError, TypeError)):
            TopKConfig(topk=bad)


@pytest.mark.parametrize("name", ["hr", "ndcg", "hr_item", "ndcg_item"])
def test_ranking_conformance(registry, name):
    check_ranking_metric(_build(registry, name))


def test_invalid_conformance(registry):
    values = check_metric(_build(registry, "invalid"))
    assert set(values) == {"invalid_prediction_count", "invalid_fraction"}


def test_sid_calc_scores_several_files_as_one_set(tmp_path):
    """Upstream calc.py takes a list of paths: the records of all files are scored together."""
    from click.testing import CliRunner

    from sidcore.cli import build_cli

    info = tmp_path / "info.txt"
    info.write_text("".join(f"{s}\ttitle\t{i}\n" for i, s in enumerate(sorted(VALID))))
    recs = [{"output": A + "\n", "predict": [A, B]}, {"output": B + "\n", "predict": [A, B]},
            {"output": C + "\n", "predict": [X, C]}]
    one, two, both = tmp_path / "1.json", tmp_path / "2.json", tmp_path / "all.json"
    one.write_text(json.dumps(recs[:2]))
    two.write_text(json.dumps(recs[2:]))
    both.write_text(json.dumps(recs))
    cli = build_cli()

    def run(*paths):
        res = CliRunner().invoke(cli, ["calc", *paths, "--item-path", str(info), "--topk", "1,2", "--json"])
        assert res.exit_code == 0, res.output
        return json.loads(res.output)

    whole = run("--path", str(both))
    assert run("--path", str(one), "--path", str(two)) == whole == run("--path", str(one), str(two))
    assert whole["hr"] == {"1": 1 / 3, "2": 1.0} and whole["invalid_prediction_count"] == 1
    res = CliRunner().invoke(cli, ["calc", "--item-path", str(info)])
    assert res.exit_code != 0 and "at least one predictions file" in str(res.exception)
