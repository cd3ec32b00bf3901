"""Wall time of ``sid data amazon18`` vs a plain-Python transcription of upstream's script, same input.

    python bench/data_prep.py --reviews 1000000 --rounds 2 [--quirk 0.01] [--workdir /tmp/dp_bench]

Generates a synthetic raw Amazon-2018 category (``sidcore.dataprep.synthetic``; 1M reviews is about
470 MB), then runs, alternating, upstream's behaviour as pure Python loops
(``tests/dataprep/reference_amazon18.py``: the same steps as ``data/amazon18_data_process.py``,
without its torch import and tqdm bars) and ``prepare_amazon18``, each in a fresh subprocess,
and checks that the eight output files are byte-identical. Prints one JSON line per run and a
summary (median of each; wall and CPU = user + sys seconds). Record ``/proc/loadavg`` before and after: the machine is shared.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REF = ("import sys; sys.path.insert(0, 'tests/dataprep'); import reference_amazon18 as r; "
       "r.run({a!r}, {b!r}, 'B', {o!r})")
SID = ("from sidcore.dataprep.amazon18 import prepare_amazon18 as p; "
       "p({a!r}, {b!r}, dataset='B', out={o!r}, overwrite=True)")


def run(code: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of `code` in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'plugins'}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reviews", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quirk", type=float, default=0.01)
    ap.add_argument("--workdir", default="/tmp/dp_bench")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from sidcore.dataprep.synthetic import write_amazon18

    work = Path(args.workdir)
    raw = work / f"raw_{args.reviews}_{args.quirk}"
    reviews, meta = raw / "Synthetic.json", raw / "meta_Synthetic.json"
    if not meta.exists():
        write_amazon18(raw, n_reviews=args.reviews, seed=0, quirk=args.quirk)
    print(json.dumps({"loadavg_before": open("/proc/loadavg").read().split()[:3],
                      "reviews_bytes": reviews.stat().st_size}), flush=True)
    times: dict[str, list[float]] = {"reference": [], "sid": []}
    cpu: dict[str, list[float]] = {"reference": [], "sid": []}
    for r in range(args.rounds):
        for name, code in (("reference", REF), ("sid", SID)):
            out = work / f"out_{name}"
            secs, cpus = run(code.format(a=str(reviews), b=str(meta), o=str(out)))
            times[name].append(secs)
            cpu[name].append(cpus)
            print(json.dumps({"round": r, "impl": name, "seconds": round(secs, 2), "cpu_seconds": round(cpus, 2),
                              "loadavg": open("/proc/loadavg").read().split()[:3]}), flush=True)
    same = all(filecmp.cmp(work / "out_reference/B" / f, work / "out_sid/B" / f, shallow=False)
               for f in os.listdir(work / "out_reference/B"))
    ref, sid = statistics.median(times["reference"]), statistics.median(times["sid"])
    print(json.dumps({"reference_median_s": round(ref, 2), "sid_median_s": round(sid, 2),
                      "speedup": round(ref / sid, 1), "outputs_identical": same,
                      "cpu_reference_median_s": round(statistics.median(cpu["reference"]), 2),
                      "cpu_sid_median_s": round(statistics.median(cpu["sid"]), 2),
                      "loadavg_after": open("/proc/loadavg").read().split()[:3]}))


if __name__ == "__main__":
    main()
