"""Wall time of ``sid data amazon18`` vs a plain-Python transcription of upstream's script, same input.

    python bench/data_prep.py --reviews 1000000 --rounds 3 [--quirk 0.01] [--workdir /tmp/dp_bench] [--json PATH]

Generates a synthetic raw Amazon-2018 category (``sidcore.dataprep.synthetic``; 1M reviews is about
470 MB), then runs, alternating, upstream's behaviour as pure Python loops
(``tests/dataprep/reference_amazon18.py``: the same steps as ``data/amazon18_data_process.py``,
without its torch import and tqdm bars) and ``prepare_amazon18``, each in a fresh subprocess,
and checks that the eight output files are byte-identical. Prints one JSON line per run and a
summary (min and median of each; wall and CPU = user + sys seconds).

Measurement (bench/method.py): ``--rounds`` alternating rounds (at least 3; the older ``--rounds 2``
is raised to 3), the load gate before the synthetic input is written, the other processes' CPU
(the children's excluded) recorded over the whole run; the summary's ``method`` holds the loads
and the idle mark, ``summary`` the min/median and both ratios.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from method import Method, add_method_args, raise_rounds, report  # noqa: E402
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
    ap.add_argument("--quirk", type=float, default=0.01)
    ap.add_argument("--workdir", default="/tmp/dp_bench")
    ap.add_argument("--json", type=Path, help="also write the summary here")
    add_method_args(ap)
    args = ap.parse_args()
    raise_rounds(args)
    method = Method.from_args(args)
    sys.path.insert(0, str(ROOT))
    from sidcore.dataprep.synthetic import write_amazon18

    work = Path(args.workdir)
    raw = work / f"raw_{args.reviews}_{args.quirk}"
    reviews, meta = raw / "Synthetic.json", raw / "meta_Synthetic.json"
    cpu: dict[str, list[float]] = {"reference": [], "sid": []}
    count = {"reference": 0, "sid": 0}

    def side(name: str, code: str) -> float:
        out = work / f"out_{name}"
        secs, cpus = run(code.format(a=str(reviews), b=str(meta), o=str(out)))
        cpu[name].append(cpus)
        print(json.dumps({"round": count[name], "impl": name, "seconds": round(secs, 2), "cpu_seconds": round(cpus, 2),
                          "loadavg": open("/proc/loadavg").read().split()[:3]}), flush=True)
        count[name] += 1
        return secs

    with method.session():  # the load gate before the input is written; others' CPU over the whole run
        if not meta.exists():
            write_amazon18(raw, n_reviews=args.reviews, seed=0, quirk=args.quirk)
        print(json.dumps({"loadavg_before": open("/proc/loadavg").read().split()[:3],
                          "reviews_bytes": reviews.stat().st_size}), flush=True)
        times = method.alternate({"reference": lambda: side("reference", REF), "sid": lambda: side("sid", SID)})
    same = all(filecmp.cmp(work / "out_reference/B" / f, work / "out_sid/B" / f, shallow=False)
               for f in os.listdir(work / "out_reference/B"))
    summary = report(times, reference="reference", subject="sid")
    ref, sid = statistics.median(times["reference"]), statistics.median(times["sid"])
    out = {"reference_median_s": round(ref, 2), "sid_median_s": round(sid, 2),
           "speedup": round(ref / sid, 1), "outputs_identical": same,
           "reference_min_s": round(min(times["reference"]), 2), "sid_min_s": round(min(times["sid"]), 2),
           "speedup_min": round(summary["ratio_min"], 1),
           "cpu_reference_median_s": round(statistics.median(cpu["reference"]), 2),
           "cpu_sid_median_s": round(statistics.median(cpu["sid"]), 2),
           "loadavg_after": open("/proc/loadavg").read().split()[:3],
           "idle": method.record["idle"], "others_cores": round(method.record["others_cores"], 2),
           "summary": summary, "method": method.record}
    print(json.dumps(out))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **out}, indent=2))

if __name__ == "__main__":
    main()
