"""Pure ranking-metric functions with the exact semantics of MiniOneRec's `calc.py`.

Used by the metric components, by the kernel's eval loop and by ``sid calc``. Rules (reference
spec §6.2): a prediction is normalised with ``p.strip('"\\n').strip()`` and a target with
``t.strip(' \\n"')`` (first element when the target is a list); each sample's predictions are
scanned in rank order, predictions outside the valid SID set are counted as invalid, and the scan
stops at the first prediction equal to the target (its index is the rank; invalid predictions
after the hit are not counted). K values larger than the number of beams of the *first* sample
are dropped. HR@K is the mean of ``[rank < K]``; NDCG@K the mean of ``1/log2(rank + 2)`` over
hits within K, summed as ``1/ln(rank + 2)`` and divided by ``n`` and by ``1/ln 2`` like the
reference, so the floats are the same to the last bit. `compute` returns the reference metrics
JSON (§6.6); `load_predictions` reads an ``eval_predictions.json``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Collection, Iterable, Sequence

import attrs

from sidcore.api import DataError, file_error
from sid_metrics.config import DEFAULT_TOPK

_SID_LIKE = re.compile(r"^(<[^<>\s]+>)+$")  # column 0 of an info line: level tokens, e.g. <a_1><b_2><c_3>

__all__ = [
    "DEFAULT_TOPK",
    "Scan",
    "compute",
    "effective_topk",
    "format_report",
    "hit_rates",
    "load_predictions",
    "load_valid_sids",
    "ndcgs",
    "normalize_prediction",
    "normalize_target",
    "scan",
]


def normalize_prediction(prediction: str) -> str:
    """`calc.py` prediction cleanup: strip quotes/newlines, then whitespace."""
    return prediction.strip('"\n').strip()


def normalize_target(target: str | Sequence[str]) -> str:
    """`calc.py` target cleanup: strip spaces, newlines and quotes (first element of a list)."""
    if not isinstance(target, str):
        target = target[0]
    return target.strip(' \n"')


@attrs.frozen
class Scan:
    """One sample's scan result.

    Attributes:
        rank: 0-based index of the first prediction equal to the target, or None (miss).
        invalid: predictions outside the valid set among the scanned ones.
        scanned: predictions looked at (``rank + 1`` on a hit, all of them on a miss).
    """

    rank: int | None
    invalid: int
    scanned: int


def scan(predictions: Sequence[str], target: str, valid: Collection[str] | None) -> Scan:
    """Scan one sample's ranked predictions until the first hit.

    Args:
        predictions: raw predicted strings, best first.
        target: the *normalised* target.
        valid: the valid SID set (None: do not count invalid predictions).

    Returns:
        The `Scan` of this sample.
    """
    invalid = 0
    for i, raw in enumerate(predictions):
        p = normalize_prediction(raw)
        if valid is not None and p not in valid:
            invalid += 1
        if p == target:
            return Scan(rank=i, invalid=invalid, scanned=i + 1)
    return Scan(rank=None, invalid=invalid, scanned=len(predictions))


def effective_topk(topk: Iterable[int], n_beams: int) -> list[int]:
    """Sorted distinct K values with ``K <= n_beams`` (larger K are dropped, like `calc.py`)."""
    return sorted({int(k) for k in topk if int(k) <= n_beams})


def hit_rates(ranks: Sequence[int | None], ks: Sequence[int]) -> dict[int, float]:
    """HR@K for each K: the share of ranks with ``rank < K`` (None = miss)."""
    n = len(ranks)
    return {k: sum(1 for r in ranks if r is not None and r < k) / n for k in ks}


def ndcgs(ranks: Sequence[int | None], ks: Sequence[int]) -> dict[int, float]:
    """NDCG@K for each K with a single relevant item (IDCG = 1), accumulated like `calc.py`."""
    n = len(ranks)
    out: dict[int, float] = {}
    for k in ks:
        total = 0.0
        for r in ranks:  # sample order, as the reference sums
            if r is not None and r < k:
                total += 1 / math.log(r + 2)
        out[k] = total / n / (1.0 / math.log(2))
    return out


def check_inputs(
    predictions: Sequence[Sequence[str]], targets: Sequence[Any], *, where: str = "metrics"
) -> int:
    """Validate shapes; return the number of samples.

    Raises:
        DataError: no samples, or different numbers of prediction lists and targets.
    """
    if len(predictions) != len(targets):
        raise DataError(f"{where}: {len(predictions)} prediction lists but {len(targets)} targets")
    if not predictions:
        raise DataError(f"{where}: no samples to score")
    return len(predictions)


def compute(
    predictions: Sequence[Sequence[str]],
    targets: Sequence[str | Sequence[str]],
    valid_sids: Collection[str],
    topk: Iterable[int] = DEFAULT_TOPK,
) -> dict[str, Any]:
    """Score ranked predictions; return the reference metrics JSON structure.

    Args:
        predictions: per sample, predicted SID strings best first (raw; normalised here).
        targets: per sample, the target SID (raw; normalised here).
        valid_sids: the catalog's SID strings (column 0 of the info file, stripped).
        topk: requested K values; those above the first sample's beam count are dropped.

    Returns:
        ``{"hr": {"1": ..}, "ndcg": {"1": ..}, "topk": [..], "n_samples": N, "n_beams": B,
        "invalid_prediction_count": C}``.

    Raises:
        DataError: no samples, or mismatched lengths.
    """
    n = check_inputs(predictions, targets)
    n_beams = len(predictions[0])
    ks = effective_topk(topk, n_beams)
    valid = valid_sids if isinstance(valid_sids, (set, frozenset)) else frozenset(valid_sids)
    scans = [scan(p, normalize_target(t), valid) for p, t in zip(predictions, targets)]
    ranks = [s.rank for s in scans]
    return {
        "hr": {str(k): v for k, v in hit_rates(ranks, ks).items()},
        "ndcg": {str(k): v for k, v in ndcgs(ranks, ks).items()},
        "topk": ks,
        "n_samples": n,
        "n_beams": n_beams,
        "invalid_prediction_count": sum(s.invalid for s in scans),
    }


def format_report(result: dict[str, Any]) -> str:
    """A `calc.py`-style text report of a `compute` result (NDCG list, HR list, invalid count)."""
    ks = [str(k) for k in result["topk"]]
    ndcg = [result["ndcg"][k] for k in ks]
    hr = [result["hr"][k] for k in ks]
    return f"NDCG:\t{ndcg}\nHR\t{hr}\n{result['invalid_prediction_count']}"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None


def load_predictions(path: str | Path) -> tuple[list[list[str]], list[str]]:
    """Read an ``eval_predictions.json`` (a list of ``{"output", "predict"[, "input"]}``).

    Args:
        path: the JSON file.

    Returns:
        ``(predictions, targets)``: the ``predict`` lists and the ``output`` values (raw, a list
        output is reduced to its first element).

    Raises:
        DataError: unreadable file, invalid JSON or a wrong shape; the message names the file
            and the record index.
    """
    path = Path(path)
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise file_error(path, f"invalid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from None
    if not isinstance(data, list):
        got = type(data).__name__
        raise file_error(path, f"expected a JSON list of {{output, predict}} records, got {got}")
    if not data:
        raise file_error(path, "no records (empty list)")
    predictions: list[list[str]] = []
    targets: list[str] = []
    for i, rec in enumerate(data):
        key = f"record {i}"
        if not isinstance(rec, dict):
            got = type(rec).__name__
            raise file_error(path, f"expected an object with 'output' and 'predict', got {got}", key=key)
        for name in ("output", "predict"):
            if name not in rec:
                raise file_error(path, f"missing key '{name}'", key=key)
        predict, output = rec["predict"], rec["output"]
        if not isinstance(predict, list) or not all(isinstance(p, str) for p in predict):
            raise file_error(path, "'predict' must be a list of strings", key=key)
        if not predict:
            raise file_error(path, "'predict' is empty", key=key)
        if isinstance(output, list) and output and isinstance(output[0], str):
            output = output[0]
        if not isinstance(output, str):
            raise file_error(path, "'output' must be a string (or a list of strings)", key=key)
        predictions.append(predict)
        targets.append(output)
    return predictions, targets


def load_valid_sids(path: str | Path) -> frozenset[str]:
    """The valid SID set of an info file: column 0 (stripped) of every non-empty line."""
    path = Path(path)
    sids = set()
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not _SID_LIKE.match(fields[0].strip()):
            raise file_error(path, "not an info file: expected <sid>\\t<title>\\t<item_id> lines "
                             f"(got {line[:40]!r})", line=lineno)
        sids.add(fields[0].strip())
    if not sids:
        raise file_error(path, "no SIDs (empty info file)")
    return frozenset(sids)
