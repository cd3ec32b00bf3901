"""Popularity baseline of a MiniOneRec split, exactly as ``sid run`` builds it, scored with calc.py semantics.

The ranking is the most frequent target SIDs of the training rows (ties by first appearance),
filled up to 50 with the remaining catalog SIDs in catalog order
(`sidcore.eval.metrics_layout.popularity_ranking`, as in `sidcore.run.job._make_evaluator`). Every test row
gets that same ranking, and `sid_metrics.calc.compute` scores it. A second variant counts every
interaction of the training rows (history items and target); that is the documented HR@10 ≈ 0.078. No model, no jax. Not a test.

    .venv/bin/python bench/popularity_baseline.py --data-dir ../shared/data/minionerec/Amazon
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

from sid_metrics.calc import compute
from sidcore.data.minionerec import catalog_sids, read_csv, read_info
from sidcore.eval.metrics_layout import popularity_ranking


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--category", default="Industrial_and_Scientific")
    p.add_argument("--stem", default="5_2016-10-2018-11")
    p.add_argument("--train-split", default="valid", help="rows the ranking is counted on (no train split ships)")
    p.add_argument("--beams", type=int, default=50)
    args = p.parse_args()
    root = Path(args.data_dir)
    name = f"{args.category}_{args.stem}"
    info = read_info(root / "info" / f"{name}.txt")
    valid = catalog_sids(info)
    order = list(dict.fromkeys(e.sid for e in info))
    train = read_csv(root / args.train_split / f"{name}.csv", valid_sids=valid)
    test = read_csv(root / "test" / f"{name}.csv", valid_sids=valid)
    targets = [r.item_sid for r in test]
    out = {"train_rows": len(train), "test_rows": len(test)}
    ranked = popularity_ranking(train, args.beams)  # what sid reports: target SIDs only
    counts = collections.Counter(s for r in train for s in (*r.history_item_sid, r.item_sid))
    variants = {"sid (targets of train rows)": ranked,
                "all interactions of train rows (history + target)": [s for s, _ in counts.most_common(args.beams)]}
    for label, top in variants.items():
        ranking = (top + [s for s in order if s not in set(top)])[: args.beams]
        res = compute([ranking] * len(test), targets, valid)
        out[label] = {"hr": res["hr"], "ndcg": res["ndcg"]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
